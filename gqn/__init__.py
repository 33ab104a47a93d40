"""gqn: the Generative Query Network (Eslami et al., Science 2018) in PyTorch."""

__version__ = "0.1.0"
