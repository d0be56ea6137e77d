"""mixiqa: blind image quality assessment learned from mixed datasets.

    >>> import mixiqa
    >>> model = mixiqa.load_model("runs/quick")   # or None for the shipped default
    >>> model.score(["photo.jpg"])
"""

__version__ = "0.1.0"


def load_model(path=None, with_backbone: bool = True, device: str = "cpu"):
    """Load a trained model folder (see :func:`mixiqa.models.iqa.load_model`)."""
    from mixiqa.models.iqa import load_model as _load

    return _load(path, with_backbone=with_backbone, device=device)


__all__ = ["load_model", "__version__"]
