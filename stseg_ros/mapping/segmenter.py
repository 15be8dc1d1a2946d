"""The segmenters by name (``stseg run --segmenter NAME``), each a
``core.segmentation.Segmenter``: one registered scan in, structure labels and
object segments with a class and a score out. Identities across epochs are
the association stage's job unless a segmenter provides them: the 4D model
reads the stored past epochs of its ``window`` and returns the persistent id
of each segment (0 for a new object).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from stseg_ros.core.segmentation import Segmentation, Segmenter
from stseg_ros.data import LEARNED_WEIGHTS, data_file
from stseg_ros.mapping.classifier import ClusterClassifier
from stseg_ros.mapping.geometric import (
    GeometricConfig,
    coverage,
    describe,
    occupied_voxels,
    split_scan,
)


class GeometricSegmenter:
    """Structure and objects by the voxel rules of ``geometric.py``, classes by a
    small trained classifier. Every cluster is kept as an object, named with
    its most likely object class and scored with that class's probability;
    its objectness is the classifier's P(an object) times its coverage
    (``geometric.coverage``)."""

    name = "geometric"
    window = 0                       # reads no stored epoch

    def __init__(self, cfg: GeometricConfig | None = None,
                 classifier: ClusterClassifier | None = None) -> None:
        self.cfg = cfg or GeometricConfig()
        self.classifier = classifier or ClusterClassifier.load()

    def segment(self, xyz: np.ndarray, rgb: np.ndarray, history: Sequence = ()) -> Segmentation:
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


def _learned(joint: bool) -> Callable[..., Segmenter]:
    def make(device: str, backend: str, weights: str | None, structure: str | None,
             classes: str | None) -> Segmenter:
        from stseg_ros.learned.instances import InstanceConfig
        from stseg_ros.learned.segmenter import LearnedSegmenter

        return LearnedSegmenter(weights, device, backend, joint=joint,
                                instances=InstanceConfig(**{k: v for k, v in (
                                    ("structure", structure), ("classes", classes)) if v}))
    return make


# name -> factory(device, backend, weights, structure, classes); the learned ones
# import torch only when made
SEGMENTERS: dict[str, Callable[..., Segmenter]] = {
    "geometric": lambda *settings: GeometricSegmenter(),
    "learned": _learned(joint=True),
    "learned-per-epoch": _learned(joint=False),
}


def default_segmenter() -> str:
    """``learned`` (the 4D network) where its weights are installed, as they
    are with the package; ``geometric`` in an install without them."""
    return "learned" if data_file(LEARNED_WEIGHTS).is_file() else "geometric"


def make_segmenter(name: str | None = None, device: str = "cpu", backend: str = "torch",
                   weights: str | None = None, structure: str | None = None,
                   classes: str | None = None) -> Segmenter:
    """A segmenter by name (None: ``default_segmenter()``); unknown names list
    what exists. ``device``, ``backend``, ``weights`` (default: the shipped
    ones), ``structure`` and ``classes`` (``learned/instances.py``; None: its
    defaults) apply to the learned ones."""
    name = name or default_segmenter()
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}; available: {', '.join(SEGMENTERS)}")
    return SEGMENTERS[name](device, backend, weights, structure, classes)
