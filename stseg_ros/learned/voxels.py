"""Point clouds of several epochs -> one 4D voxel set (t, x, y, z) and back.

Each epoch is voxelised on its own grid cell set; the epoch index becomes the
voxel's ``t`` coordinate, so epochs are kept apart rather than stacked. The
network sees per voxel the mean colour, normalised by the epoch's mean
brightness (revisits differ in exposure), and the height above the floor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IN_CHANNELS = 5          # r, g, b (brightness-normalised, centred), height, 1
GRID_SHIFT = np.array([0.0, 0.0, 0.5])     # in voxels: layer 0 spans z = +-voxel/2


@dataclass
class EpochVoxels:
    """One epoch's occupied voxels and which voxel each point fell in."""

    coords: np.ndarray        # (V, 3) int32 voxel indices (map frame / voxel size)
    feats: np.ndarray         # (V, IN_CHANNELS) float32
    point_voxel: np.ndarray   # (N,) int64 row of each input point's voxel


@dataclass
class Voxels4D:
    """Several epochs' voxels in one set, ready for the network (batch item 0)."""

    coords: np.ndarray        # (V, 5) int64: batch, t, x, y, z
    feats: np.ndarray         # (V, IN_CHANNELS) float32
    epoch_rows: list[np.ndarray]      # per epoch: rows of its voxels
    point_voxel: list[np.ndarray]     # per epoch: row (into coords) of each point


def voxel_features(rgb_mean: np.ndarray, z_mean: np.ndarray) -> np.ndarray:
    """Network input per voxel from mean colour (0..255) and mean height (m)."""
    rgb = rgb_mean.astype(np.float32) / 255.0
    brightness = max(float(rgb.mean()), 0.05) if len(rgb) else 1.0   # empty: a crop missed it
    rgb = np.clip(rgb * (0.45 / brightness), 0.0, 1.5) - 0.5
    height = (z_mean.astype(np.float32) / 1.5 - 0.5)[:, None]
    return np.concatenate([rgb, height, np.ones_like(height)], axis=1).astype(np.float32)


def voxelize(xyz: np.ndarray, rgb: np.ndarray, voxel: float) -> EpochVoxels:
    """Occupied voxels of one epoch's cloud (map frame, z up, floor at 0)."""
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(rgb) != len(xyz):
        raise ValueError(f"expected (N, 3) xyz and rgb, got {xyz.shape} and {rgb.shape}")
    finite = np.isfinite(xyz).all(axis=1)
    if not finite.all():
        raise ValueError(f"{int((~finite).sum())} points are not finite")
    cells = np.floor(xyz / voxel + GRID_SHIFT).astype(np.int64)
    coords, inverse, counts = np.unique(cells, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros((len(coords), 4))
    np.add.at(sums, inverse, np.concatenate([rgb.astype(np.float64), xyz[:, 2:3]], axis=1))
    means = sums / counts[:, None]
    return EpochVoxels(coords.astype(np.int32), voxel_features(means[:, :3], means[:, 3]),
                       inverse)


def voxel_centres(coords: np.ndarray, voxel: float) -> np.ndarray:
    """Map-frame centres (m) of voxels with indices ``coords`` (V, 3)."""
    return (coords + 0.5 - GRID_SHIFT) * voxel


def stack_epochs(epochs: list[EpochVoxels]) -> Voxels4D:
    """Epoch voxel sets side by side in one 4D set (t = position in the list)."""
    coords, feats, rows, point_voxel = [], [], [], []
    start = 0
    for t, ev in enumerate(epochs):
        n = len(ev.coords)
        coords.append(np.concatenate([np.zeros((n, 1), np.int64), np.full((n, 1), t, np.int64),
                                      ev.coords.astype(np.int64)], axis=1))
        feats.append(ev.feats)
        rows.append(np.arange(start, start + n))
        point_voxel.append(ev.point_voxel + start)
        start += n
    return Voxels4D(np.concatenate(coords) if coords else np.zeros((0, 5), np.int64),
                    np.concatenate(feats) if feats else np.zeros((0, IN_CHANNELS), np.float32),
                    rows, point_voxel)


def voxel_mode(point_voxel: np.ndarray, labels: np.ndarray, voxels: int) -> np.ndarray:
    """The most frequent label of each voxel's points (ties: the smallest label)."""
    if len(labels) == 0:
        return np.zeros(voxels, dtype=labels.dtype)
    order = np.lexsort((labels, point_voxel))
    v, lab = point_voxel[order], labels[order]
    new_run = np.r_[True, (v[1:] != v[:-1]) | (lab[1:] != lab[:-1])]
    starts = np.flatnonzero(new_run)
    run_len = np.diff(np.r_[starts, len(v)])
    run_voxel, run_label = v[starts], lab[starts]
    best = np.lexsort((-run_len, run_voxel))        # per voxel, longest run first
    first = np.r_[True, run_voxel[best][1:] != run_voxel[best][:-1]]
    out = np.zeros(voxels, dtype=labels.dtype)
    out[run_voxel[best][first]] = run_label[best][first]
    return out
