"""Data files shipped with stseg_ros."""

from importlib.resources import files
from pathlib import Path

LEARNED_WEIGHTS = "unet4d.pt"       # the learned segmenter's shipped weights


def data_file(name: str) -> Path:
    """Path of a file shipped in this package (it may be missing in a trimmed install)."""
    return Path(str(files(__name__).joinpath(name)))
