"""gqn: the Generative Query Network (Eslami et al., Science 2018) in PyTorch.

import gqn
model = gqn.load_pretrained("shepard_metzler_5_parts")
model, loaded = gqn.load_model("runs/gqn")   # any source: see gqn.checkpoint
"""

__version__ = "0.1.0"

__all__ = ["load_model", "load_pretrained"]


def __getattr__(name: str):
    # Imported on first use, so that `import gqn` (and `gqn --help`) does not load torch.
    if name in __all__:
        from gqn import checkpoint

        return getattr(checkpoint, name)
    raise AttributeError(f"module 'gqn' has no attribute {name!r}")
