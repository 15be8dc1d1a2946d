"""Segmenters behind one interface (``stseg run --segmenter NAME``).

A segmenter turns one registered scan (map frame) into structure labels and
object segments with a class and a score. Identities across epochs are the
association stage's job unless a segmenter provides them: a ``temporal``
segmenter (the 4D model) also receives the stored past epochs and returns
the persistent id of each segment (0 for a new object).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stseg_ros.data import data_file
from stseg_ros.mapping.classifier import ClusterClassifier
from stseg_ros.mapping.geometric import (
    GeometricConfig,
    Segment,
    coverage,
    describe,
    occupied_voxels,
    split_scan,
)


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

    def confidence(self, i: int) -> float:
        """How sure the segmenter is of segment ``i``'s class, whatever its size
        (relabelling asks)."""
        return self.scores[i] if self.class_confidence is None else self.class_confidence[i]


class GeometricSegmenter:
    """Structure and objects by the voxel rules of ``geometric.py``, classes by a
    small trained classifier. Every cluster is kept as an object, named with
    its most likely object class and scored with that class's probability;
    its objectness is the classifier's P(an object) times its coverage
    (``geometric.coverage``)."""

    name = "geometric"
    temporal = False

    def __init__(self, cfg: GeometricConfig | None = None,
                 classifier: ClusterClassifier | None = None) -> None:
        self.cfg = cfg or GeometricConfig()
        self.classifier = classifier or ClusterClassifier.load()

    def segment(self, xyz: np.ndarray, rgb: np.ndarray) -> Segmentation:
        split = split_scan(xyz, self.cfg)
        structure, normals = split.structure, split.normals
        segments = [describe(xyz, rgb, normals, np.flatnonzero(split.clusters == c))
                    for c in np.unique(split.clusters[split.clusters > 0])]
        if not segments:
            return Segmentation(structure, [], [], [], normals)
        classes, objectness, confidence = self.classifier.object_class(
            np.stack([s.features for s in segments]))
        whole = coverage([occupied_voxels(xyz[s.points]) for s in segments],
                         self.cfg.score_voxels)
        return Segmentation(structure, segments, [int(c) for c in classes],
                            [float(c) for c in confidence], normals,
                            objectness=[float(o) for o in objectness * whole])


SEGMENTERS = ("geometric", "learned", "learned-per-epoch")
LEARNED_WEIGHTS = "unet4d.pt"          # shipped in stseg_ros/data


def default_segmenter() -> str:
    """``learned`` (the 4D network) where its weights are installed, as they
    are with the package; ``geometric`` in an install without them."""
    return "learned" if data_file(LEARNED_WEIGHTS).is_file() else "geometric"


def make_segmenter(name: str | None = None, device: str = "cpu", backend: str = "torch",
                   weights: str | None = None, structure: str | None = None,
                   classes: str | None = None):
    """A segmenter by name (None: ``default_segmenter()``); unknown names list
    what exists. ``device``, ``backend``, ``weights`` (default: the shipped
    ones), ``structure`` and ``classes`` (``learned/instances.py``; None: its
    defaults) apply to the learned ones."""
    name = name or default_segmenter()
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}; available: {', '.join(SEGMENTERS)}")
    if name == "geometric":
        return GeometricSegmenter()
    from stseg_ros.learned.instances import InstanceConfig
    from stseg_ros.learned.segmenter import LearnedSegmenter

    return LearnedSegmenter(weights, device, backend, joint=name == "learned",
                            instances=InstanceConfig(**{k: v for k, v in (
                                ("structure", structure), ("classes", classes)) if v}))
