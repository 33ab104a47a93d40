"""gqn: the Generative Query Network (Eslami et al., Science 2018) in PyTorch.

import gqn
model = gqn.load_pretrained("shepard_metzler_5_parts")
"""

__version__ = "0.1.0"

__all__ = ["load_model", "load_pretrained"]


def __getattr__(name: str):
    # Imported on first use, so that `import gqn` (and `gqn --help`) does not load torch.
    if name == "load_pretrained":
        from gqn.pretrained import load_pretrained

        return load_pretrained
    if name == "load_model":
        from gqn.evaluate import load_model

        return load_model
    raise AttributeError(f"module 'gqn' has no attribute {name!r}")
