"""What a segmenter gives the mapper, and the one interface every segmenter
has. Imports nothing else of the package, so the segmenters, the mapper and
the tests share these records without importing one another."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Segment:
    """One object cluster of a scan, with what association and the classifier need."""

    points: np.ndarray      # indices into the scan
    centroid: np.ndarray    # (3,) map frame
    yaw: float              # main horizontal axis, modulo pi
    extents: np.ndarray     # (3,) along the main axis, across it, vertical
    features: np.ndarray    # mapping.geometric.FEATURE_NAMES
    colour: np.ndarray      # (3,) mean RGB in [0, 1]


@dataclass
class Segmentation:
    structure: np.ndarray               # (N,) NYU40 id of floor/wall/ceiling, 0 = object
    segments: list[Segment]
    class_ids: list[int]
    scores: list[float]                 # of the class: how sure, times how whole (ranking)
    normals: np.ndarray | None = None
    identities: list[int] | None = None   # persistent id per segment (0: new), if tracked
    extra: dict = field(default_factory=dict)
    objectness: list[float] | None = None   # a whole object, whatever its class?
    class_confidence: list[float] | None = None   # P(class) alone; None: the scores
    class_names: list[str] | None = None     # the robot's own names (2D labels); None: NYU40

    def confidence(self, i: int) -> float:
        """How sure the segmenter is of segment ``i``'s class, whatever its size
        (relabelling asks)."""
        return self.scores[i] if self.class_confidence is None else self.class_confidence[i]


class Segmenter(Protocol):
    """Turns one registered scan (map frame) into structure labels and object
    segments. ``window`` is how many stored registered epochs it reads
    (``history``, oldest first, the stored segmented clouds; 0: none, and the
    mapper reads none for it). A segmenter that tracks objects across epochs
    returns their persistent ids in ``Segmentation.identities``; otherwise the
    mapper's association gives them."""

    name: str
    window: int

    def segment(self, xyz: np.ndarray, rgb: np.ndarray,
                history: Sequence = ()) -> Segmentation: ...
