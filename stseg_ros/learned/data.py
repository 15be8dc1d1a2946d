"""Training samples from generated datasets (``stseg generate``).

Every epoch of every scene is loaded once as labelled points in the map frame
(with the ground-truth transform: training does not depend on registration).
A sample is 1 to 3 epochs of one scene (single-epoch samples are mixed in, as
ReScene4D does), cropped to the same square window in every epoch, rotated
about z, with a small per-epoch shift that stands in for registration error
and a per-epoch lift that moves the floor within its voxel layer, then
voxelised exactly as at inference. Each epoch is levelled so that its floor
lies at z = 0, as in a registered map (fast-mode clouds put it about 1 cm
high: far floor points carry more depth noise). Sample ``i`` of a run
depends only on (seed, i), so an interrupted run resumes exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stseg_ros.core.classes import class_id
from stseg_ros.core.layout import open_dataset, read_cloud, read_epoch_result
from stseg_ros.core.pointcloud import transform_points
from stseg_ros.learned.voxels import stack_epochs, voxel_mode, voxelize

FLOOR = class_id("floor")


@dataclass
class LabelledEpoch:
    xyz: np.ndarray           # (N, 3) float32, map frame
    rgb: np.ndarray           # (N, 3) uint8
    semantic: np.ndarray      # (N,) int8 index into class_ids, -1 unknown
    instance: np.ndarray      # (N,) int32 persistent id, 0 none


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
    lift: float = 0.015                     # m, per-epoch z offset (uniform +-)
    gain: float = 0.3                       # per-epoch colour gain spread

    def __post_init__(self) -> None:
        counts, weights = self.epoch_counts, self.epoch_weights
        if not counts or len(counts) != len(weights):
            raise ValueError(f"epoch counts {list(counts)} and their weights {list(weights)} "
                             "must be two lists of the same, non-zero length")
        if any(int(c) != c or c < 1 for c in counts):
            raise ValueError(f"epoch counts must be whole numbers of 1 or more: {list(counts)}")
        if any(not math.isfinite(w) or w < 0 for w in weights) or \
                abs(sum(weights) - 1.0) > 1e-6:
            raise ValueError(f"epoch weights must be shares adding up to 1: {list(weights)}")


def load_scenes(datasets: list[Path], class_ids: tuple[int, ...],
                progress: bool = True) -> list[list[LabelledEpoch]]:
    """All epochs of all scenes of the datasets, as labelled map-frame points."""
    lookup = class_lookup(class_ids)
    jobs = []
    for root in datasets:
        index = open_dataset(Path(root))
        jobs += [(Path(root) / scene, index.epochs(scene)) for scene in index.scenes]
    scenes = []
    for scene_dir, epochs in tqdm(jobs, desc="loading", unit="scene", disable=not progress):
        scene = []
        for name in epochs:
            xyz, rgb = read_cloud(scene_dir / name)
            truth = read_epoch_result(scene_dir / name, num_points=len(xyz))
            xyz = transform_points(truth.map_from_odom, xyz.astype(np.float64))
            floor_to_zero(xyz, truth.class_id == FLOOR)
            scene.append(LabelledEpoch(xyz.astype(np.float32), rgb.astype(np.uint8),
                                       lookup[np.clip(truth.class_id, 0, 255)],
                                       truth.instance_id.astype(np.int32)))
        scenes.append(scene)
    return scenes


def class_lookup(class_ids: tuple[int, ...]) -> np.ndarray:
    """NYU40 id (0-255) to the network's class index, -1 for classes it lacks."""
    if len(class_ids) > 127:
        raise ValueError(f"{len(class_ids)} classes do not fit the int8 labels")
    lookup = np.full(256, -1, np.int8)
    lookup[list(class_ids)] = np.arange(len(class_ids))
    return lookup


def floor_to_zero(xyz: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """Shift ``xyz`` (in place) so that the median of its ``floor`` points lies at
    z = 0, as in a registered map; left alone where no point is floor."""
    if floor.any():
        xyz[:, 2] -= np.median(xyz[floor, 2])
    return xyz


def class_weights(scenes: list[list[LabelledEpoch]], num_classes: int,
                  power: float) -> np.ndarray:
    """Cross-entropy weight per class, ``frequency ** -power`` over the labelled
    points of the training scenes (0: plain cross entropy), scaled so that the
    average weight of a labelled point stays 1. Classes never seen weigh 1."""
    counts = np.zeros(num_classes)
    for scene in scenes:
        for ep in scene:
            known = ep.semantic[ep.semantic >= 0]
            counts += np.bincount(known, minlength=num_classes)[:num_classes]
    if counts.sum() == 0:
        return np.ones(num_classes)
    freq = counts / counts.sum()
    seen = counts > 0
    weights = np.ones(num_classes)
    weights[seen] = freq[seen] ** -power
    weights[seen] /= float((freq[seen] * weights[seen]).sum())
    return weights


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
    centre = first.xyz[int(rng.integers(len(first.xyz))), :2].astype(np.float64)
    epochs, semantic, instance = [], [], []
    for e in chosen:
        ep = scene[e]
        inside = (np.abs(ep.xyz[:, :2] - centre) < cfg.crop / 2).all(axis=1)
        xy = (ep.xyz[inside, :2] - centre) @ rot.T + rng.normal(0, cfg.shift, 2)
        z = ep.xyz[inside, 2:] + rng.uniform(-cfg.lift, cfg.lift)
        ev = voxelize(np.concatenate([xy, z], axis=1), ep.rgb[inside], voxel)
        ev.feats[:, :3] = (ev.feats[:, :3] + 0.5) * rng.uniform(1 - cfg.gain, 1 + cfg.gain) - 0.5
        n = len(ev.coords)
        epochs.append(ev)
        semantic.append(voxel_mode(ev.point_voxel, ep.semantic[inside], n).astype(np.int64))
        instance.append(voxel_mode(ev.point_voxel, ep.instance[inside], n).astype(np.int64))
    vox = stack_epochs(epochs)
    return Sample(vox.coords, vox.feats, np.concatenate(semantic), np.concatenate(instance))
