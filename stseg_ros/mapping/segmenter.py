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
from stseg_ros.mapping.geometric import GeometricConfig, Segment, describe, split_scan


@dataclass
class Segmentation:
    structure: np.ndarray               # (N,) NYU40 id of floor/wall/ceiling, 0 = object
    segments: list[Segment]
    class_ids: list[int]
    scores: list[float]
    normals: np.ndarray | None = None
    identities: list[int] | None = None   # persistent id per segment (0: new), if tracked
    extra: dict = field(default_factory=dict)


class GeometricSegmenter:
    """Structure and objects by the voxel rules of ``geometric.py``, classes by a
    small trained classifier."""

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
        classes, scores = self.classifier.predict(np.stack([s.features for s in segments]))
        keep = [i for i, c in enumerate(classes) if c > 0]      # 0: not an object
        return Segmentation(structure, [segments[i] for i in keep],
                            [int(classes[i]) for i in keep], [float(scores[i]) for i in keep],
                            normals)


SEGMENTERS = ("geometric", "learned", "learned-per-epoch")
LEARNED_WEIGHTS = "unet4d.pt"          # shipped in stseg_ros/data


def default_segmenter() -> str:
    """``learned`` (the 4D network) where its weights are installed, as they
    are with the package; ``geometric`` in an install without them."""
    return "learned" if data_file(LEARNED_WEIGHTS).is_file() else "geometric"


def make_segmenter(name: str | None = None, device: str = "cpu", backend: str = "torch",
                   weights: str | None = None, structure: str = "network"):
    """A segmenter by name (None: ``default_segmenter()``); unknown names list
    what exists. ``device``, ``backend``, ``weights`` (default: the shipped
    ones) and ``structure`` (``learned/instances.py``) apply to the learned ones."""
    name = name or default_segmenter()
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}; available: {', '.join(SEGMENTERS)}")
    if name == "geometric":
        return GeometricSegmenter()
    from stseg_ros.learned.instances import InstanceConfig
    from stseg_ros.learned.segmenter import LearnedSegmenter

    return LearnedSegmenter(weights, device, backend, joint=name == "learned",
                            instances=InstanceConfig(structure=structure))
