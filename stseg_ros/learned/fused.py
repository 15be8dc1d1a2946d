"""Generated rooms as the nodes see them, labelled for training.

``stseg generate`` labels its evaluation clouds, which are back-projected
with the true poses: clean, one surface thick, every place seen as often as
the camera saw it. What the mapper segments is a scan fused from the bag's
frames with drifting odometry, then registered and levelled: thicker
surfaces, smeared edges, holes where the fusion dropped frames, and a few
centimetres of residual error. A network trained on the clean clouds only
meets the fused ones at inference.

This reads the fused scans that ``stseg run DATASET --out RUN`` stored in
each scene's memory (registered epochs, map frame, levelled) and gives every
point the class and persistent instance of the nearest ground-truth point of
its epoch, placed with the same transform the evaluation uses (the
revisit's estimated ``map_from_odom``). A fused point farther than
``LABEL_DISTANCE`` from every labelled point stays unknown (class -1,
instance 0), so drift and fusion artefacts carry no label rather than a
wrong one. The stored segmentation itself is not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from tqdm import tqdm

from stseg_ros.core.layout import LABEL_DISTANCE, open_dataset, read_cloud, read_epoch_result
from stseg_ros.core.pointcloud import transform_points
from stseg_ros.learned.data import FLOOR, LabelledEpoch, class_lookup, floor_to_zero
from stseg_ros.memory import ObjectMemory


@dataclass
class FusedCoverage:
    """How much of the fused scans got a label: the share tells whether the
    run and the dataset belong together (a foreign pairing labels nothing)."""

    epochs: int = 0
    unregistered: int = 0
    points: int = 0
    labelled: int = 0

    @property
    def share(self) -> float:
        return self.labelled / self.points if self.points else 0.0


def load_fused(pairs: list[tuple[Path, Path]], class_ids: tuple[int, ...],
               progress: bool = True) -> tuple[list[list[LabelledEpoch]], FusedCoverage]:
    """The registered fused epochs of each (dataset, run) pair as labelled scenes
    (one per scene with at least one), and how much of them was labelled."""
    lookup = class_lookup(class_ids)
    jobs = []
    for dataset, run in pairs:
        dataset, run = Path(dataset), Path(run)
        index = open_dataset(dataset)
        for scene in index.scenes:
            db = run / scene / "memory.db"
            if not db.is_file():
                raise ValueError(f"{run}: no {scene}/memory.db; map the dataset first: "
                                 f"stseg run {dataset} --out {run}")
            jobs.append((dataset / scene, db, index.epochs(scene)))
    scenes, coverage = [], FusedCoverage()
    for scene_dir, db, names in tqdm(jobs, desc="fused scans", unit="scene",
                                     disable=not progress):
        scene = []
        with ObjectMemory(db) as memory:
            stored = {e.index: e for e in memory.epochs()}
            for t, name in enumerate(names):
                entry = stored.get(t)
                if entry is None:
                    continue
                if entry.label and entry.label != name:
                    raise ValueError(f"{db}: epoch {t} is {entry.label!r}, not {name!r} of "
                                     f"{scene_dir}: the run is of another dataset")
                coverage.epochs += 1
                points = memory.points(t)
                if not entry.registered or points is None or not len(points.xyz):
                    coverage.unregistered += 1
                    continue
                scene.append(_labelled(points.xyz, points.rgb, scene_dir / name,
                                       entry.map_from_odom, lookup, coverage))
        if scene:
            scenes.append(scene)
    return scenes, coverage


def _labelled(xyz: np.ndarray, rgb: np.ndarray, epoch_dir: Path, map_from_odom: np.ndarray,
              lookup: np.ndarray, coverage: FusedCoverage) -> LabelledEpoch:
    truth_xyz, _ = read_cloud(epoch_dir)
    truth = read_epoch_result(epoch_dir, num_points=len(truth_xyz))
    placed = transform_points(map_from_odom, truth_xyz.astype(np.float64))
    dist, idx = cKDTree(placed).query(xyz.astype(np.float64),
                                      distance_upper_bound=LABEL_DISTANCE)
    hit = np.isfinite(dist)
    class_id = np.zeros(len(xyz), np.int64)
    instance = np.zeros(len(xyz), np.int32)
    class_id[hit] = truth.class_id[idx[hit]]
    instance[hit] = truth.instance_id[idx[hit]]
    semantic = np.where(hit, lookup[np.clip(class_id, 0, 255)], -1).astype(np.int8)
    coverage.points += len(xyz)
    coverage.labelled += int(hit.sum())
    xyz = xyz.astype(np.float64)
    floor_to_zero(xyz, hit & (class_id == FLOOR))
    return LabelledEpoch(xyz.astype(np.float32), rgb.astype(np.uint8), semantic, instance)
