"""Small operations over plain point arrays, shared by the dataset writer and the mapper."""

from __future__ import annotations

import numpy as np


def voxel_keys(xyz: np.ndarray, voxel: float) -> np.ndarray:
    """One int64 key per point naming its voxel (21 bits per axis, +-10 km at 1 cm)."""
    ijk = np.floor(np.asarray(xyz, dtype=np.float64) / voxel).astype(np.int64) + (1 << 20)
    return (ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2]


def voxel_downsample(xyz: np.ndarray, voxel: float) -> np.ndarray:
    """Indices of one point per occupied voxel (the first in input order), sorted.

    Taking a real point instead of a voxel mean keeps its colour and labels
    consistent with its position.
    """
    if len(xyz) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(voxel_keys(xyz, voxel), return_index=True)
    return np.sort(first)


def transform_points(pose: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to (N, 3) points."""
    return xyz @ pose[:3, :3].T + pose[:3, 3]
