"""The error every model file loader raises (network weights, training
checkpoints, the cluster classifier), light enough to import without torch."""

from __future__ import annotations


class WeightsError(ValueError):
    """A model file is not one this package wrote, or its content does not fit
    what it claims to be (names the file and what is wrong); nothing of it was used."""


NOT_LOADED = "not a weights file this package wrote; it was not loaded"
