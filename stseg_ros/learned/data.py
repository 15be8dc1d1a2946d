"""Training samples from generated datasets (``stseg generate``).

Every epoch of every scene is voxelised once, in the map frame (with the
ground-truth transform: training does not depend on registration), with
per-voxel class and persistent instance id. A sample is 1 to 3 epochs of
one scene (single-epoch samples are mixed in, as ReScene4D does), cropped
to the same square window in every epoch, rotated about z, with a small
per-epoch shift that stands in for registration error. Sample ``i`` of a
run depends only on (seed, i), so an interrupted run resumes exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stseg_ros.core.pointcloud import transform_points
from stseg_ros.datasets.layout import open_dataset, read_cloud, read_epoch_result
from stseg_ros.learned.voxels import voxel_mode, voxelize


@dataclass
class LabelledEpoch:
    coords: np.ndarray        # (V, 3) int32
    feats: np.ndarray         # (V, C) float32
    semantic: np.ndarray      # (V,) int64 index into class_ids, -1 unknown
    instance: np.ndarray      # (V,) int64 persistent id, 0 none


@dataclass
class Sample:
    coords: np.ndarray        # (V, 5) int64
    feats: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray


@dataclass(frozen=True)
class SampleConfig:
    crop: float = 4.0                       # m, side of the square window
    epoch_counts: tuple[int, ...] = (1, 2, 3)
    epoch_weights: tuple[float, ...] = (0.25, 0.35, 0.4)
    shift: float = 0.02                     # m, per-epoch registration noise (std)
    gain: float = 0.2                       # per-epoch colour gain spread


def load_scenes(datasets: list[Path], voxel: float, class_ids: tuple[int, ...],
                progress: bool = True) -> list[list[LabelledEpoch]]:
    """All epochs of all scenes of the datasets, voxelised and labelled."""
    lookup = np.full(256, -1, np.int64)
    lookup[list(class_ids)] = np.arange(len(class_ids))
    jobs = []
    for root in datasets:
        index = open_dataset(Path(root))
        jobs += [(Path(root) / scene, index.epochs(scene)) for scene in index.scenes]
    scenes = []
    for scene_dir, epochs in tqdm(jobs, desc="voxelising", unit="scene", disable=not progress):
        scene = []
        for name in epochs:
            xyz, rgb = read_cloud(scene_dir / name)
            truth = read_epoch_result(scene_dir / name, num_points=len(xyz))
            xyz = transform_points(truth.map_from_odom, xyz.astype(np.float64))
            ev = voxelize(xyz, rgb, voxel)
            n = len(ev.coords)
            cls = voxel_mode(ev.point_voxel, truth.class_id.astype(np.int64), n)
            inst = voxel_mode(ev.point_voxel, truth.instance_id.astype(np.int64), n)
            scene.append(LabelledEpoch(ev.coords, ev.feats, lookup[np.clip(cls, 0, 255)], inst))
        scenes.append(scene)
    return scenes


def make_sample(scenes: list[list[LabelledEpoch]], seed: int, index: int, voxel: float,
                cfg: SampleConfig = SampleConfig()) -> Sample:
    """Training sample ``index`` of a run with ``seed``."""
    rng = np.random.default_rng([seed, index])
    scene = scenes[int(rng.integers(len(scenes)))]
    count = min(int(rng.choice(cfg.epoch_counts, p=cfg.epoch_weights)), len(scene))
    chosen = np.sort(rng.choice(len(scene), count, replace=False))
    angle = rng.uniform(0, 2 * math.pi)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    first = scene[chosen[0]]
    centre = (first.coords[int(rng.integers(len(first.coords))), :2] + 0.5) * voxel
    half = cfg.crop / 2
    parts = []
    for t, e in enumerate(chosen):
        ep = scene[e]
        xyz = (ep.coords + 0.5) * voxel
        inside = (np.abs(xyz[:, :2] - centre) < half).all(axis=1)
        xyz = xyz[inside]
        xy = (xyz[:, :2] - centre) @ rot.T + rng.normal(0, cfg.shift, 2)
        cells = np.floor(np.concatenate([xy, xyz[:, 2:]], axis=1) / voxel).astype(np.int64)
        cells, first_row = np.unique(cells, axis=0, return_index=True)
        rows = np.flatnonzero(inside)[first_row]
        feats = ep.feats[rows].copy()
        feats[:, :3] = (feats[:, :3] + 0.5) * rng.uniform(1 - cfg.gain, 1 + cfg.gain) - 0.5
        parts.append((t, cells, feats, ep.semantic[rows], ep.instance[rows]))
    coords = np.concatenate([np.concatenate([np.zeros((len(c), 1), np.int64),
                                             np.full((len(c), 1), t, np.int64), c], axis=1)
                             for t, c, *_ in parts])
    return Sample(coords, np.concatenate([p[2] for p in parts]),
                  np.concatenate([p[3] for p in parts]), np.concatenate([p[4] for p in parts]))

