"""Small operations over plain point arrays and rigid transforms, shared by the
dataset writer, the mapper and the metrics."""

from __future__ import annotations

import math

import numpy as np

# m: voxel keys span +-10 km at 1 cm; a coordinate beyond is a corrupt point, not a place
MAX_COORDINATE = 1e4


def voxel_keys(xyz: np.ndarray, voxel: float) -> np.ndarray:
    """One int64 key per point naming its voxel (21 bits per axis, +-10 km at 1 cm)."""
    ijk = np.floor(np.asarray(xyz, dtype=np.float64) / voxel).astype(np.int64) + (1 << 20)
    return (ijk[:, 0] << 42) | (ijk[:, 1] << 21) | ijk[:, 2]


def usable_points(xyz: np.ndarray) -> np.ndarray:
    """Mask of the points of an (N, 3) array that are finite and within
    ``MAX_COORDINATE`` on every axis: the only ones voxel keys, KD-trees and
    Open3D handle."""
    xyz = np.asarray(xyz, np.float64)
    with np.errstate(invalid="ignore"):
        return np.isfinite(xyz).all(axis=1) & (np.abs(xyz) <= MAX_COORDINATE).all(axis=1)


def voxel_downsample(xyz: np.ndarray, voxel: float) -> np.ndarray:
    """Indices of one point per occupied voxel (the first in input order), sorted.

    Taking a real point instead of a voxel mean keeps its colour and labels
    consistent with its position.
    """
    if len(xyz) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first = np.unique(voxel_keys(xyz, voxel), return_index=True)
    return np.sort(first)


def voxel_mean(xyz: np.ndarray, voxel: float) -> np.ndarray:
    """Mean position of the points in each occupied voxel: a denoised, even cloud."""
    if len(xyz) == 0:
        return np.zeros((0, 3))
    _, inverse, counts = np.unique(voxel_keys(xyz, voxel), return_inverse=True,
                                   return_counts=True)
    out = np.zeros((len(counts), 3))
    np.add.at(out, inverse.ravel(), np.asarray(xyz, np.float64))
    return out / counts[:, None]


def transform_points(pose: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Apply a 4x4 rigid transform to (N, 3) points."""
    return xyz @ pose[:3, :3].T + pose[:3, 3]


def planar_pose(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    """4x4 pose turned by ``yaw`` about +z and placed at (x, y, z)."""
    c, s = math.cos(yaw), math.sin(yaw)
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    out[:3, 3] = (x, y, z)
    return out


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle (degrees) of the rotation between the rotation parts of two transforms."""
    cos = (float(np.trace(a[:3, :3].T @ b[:3, :3])) - 1.0) / 2.0
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def rigid_transform(translation, quaternion) -> np.ndarray:
    """4x4 transform of a translation (x, y, z) and a quaternion (x, y, z, w);
    the quaternion is normalised (messages often carry slightly unnormalised ones)."""
    x, y, z, w = np.asarray(quaternion, dtype=float) / (np.linalg.norm(quaternion) or 1.0)
    out = np.eye(4)
    out[:3, :3] = [[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                   [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                   [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]]
    out[:3, 3] = translation
    return out
