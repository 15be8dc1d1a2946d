"""Odometry drift: a revisit fused in fragments, each bent back onto the map."""

from __future__ import annotations

import numpy as np

from stseg_ros.core.pointcloud import planar_pose, transform_points, voxel_mean
from stseg_ros.mapping.drift import FusedScan, bend_onto_map, place


def _room(rng: np.random.Generator, step: float = 0.03) -> np.ndarray:
    """Points on the floor and walls of a 6 x 4 x 2.5 m room, with two boxes."""
    def grid(u0, u1, v0, v1):
        u, v = np.meshgrid(np.arange(u0, u1, step), np.arange(v0, v1, step))
        return u.ravel(), v.ravel()
    parts = []
    u, v = grid(0, 6, 0, 4)
    parts.append(np.c_[u, v, np.zeros_like(u)])
    for x in (0.0, 6.0):
        u, v = grid(0, 4, 0, 2.5)
        parts.append(np.c_[np.full_like(u, x), u, v])
    for y in (0.0, 4.0):
        u, v = grid(0, 6, 0, 2.5)
        parts.append(np.c_[u, np.full_like(u, y), v])
    for cx, cy in ((1.5, 1.0), (4.2, 3.0)):             # two boxes' sides, 0.8 m high
        u, v = grid(-0.3, 0.3, 0, 0.8)
        parts += [np.c_[cx + u, np.full_like(u, cy - 0.3), v],
                  np.c_[np.full_like(u, cx + 0.3), cy + u, v]]
    xyz = np.concatenate(parts)
    return xyz + rng.normal(0, 0.003, xyz.shape)


def _scan(xyz: np.ndarray, count: int) -> tuple[FusedScan, np.ndarray]:
    """The room seen in ``count`` views around its centre, in order, as by a robot
    turning in place: the scan with each fragment's sparse cloud, and each point's
    fragment."""
    angle = np.arctan2(xyz[:, 1] - 2.0, xyz[:, 0] - 3.0) % (2 * np.pi)
    part = np.minimum((angle / (2 * np.pi) * count).astype(np.int32), count - 1)
    fragments = [voxel_mean(xyz[part == i], 0.05) for i in range(count)]
    return FusedScan(xyz.astype(np.float32), np.zeros((len(xyz), 3), np.uint8), fragments), part


def test_fragments_drifting_apart_are_bent_back_onto_the_map():
    rng = np.random.default_rng(0)
    truth = _room(rng)
    scan, part = _scan(truth, 10)
    drifted = truth.copy()
    for i in range(10):                                  # yaw bias and creep grow with time
        drift = planar_pose(0.012 * i, -0.008 * i, np.radians(0.12 * i))
        drifted[part == i] = transform_points(drift, truth[part == i])
    scan.xyz = drifted.astype(np.float32)
    scan.fragments = [voxel_mean(drifted[part == i], 0.05) for i in range(10)]
    rigid = np.linalg.norm(drifted - truth, axis=1)
    assert rigid.max() > 0.1                             # a rigid fit cannot undo this

    placed = place(scan, np.eye(4), bend_onto_map(scan, np.eye(4), truth))
    error = np.linalg.norm(placed - truth, axis=1)
    assert np.median(error) < 0.01 and np.percentile(error, 95) < 0.02


def test_a_scan_that_fits_the_map_is_left_where_it_is():
    rng = np.random.default_rng(1)
    truth = _room(rng)
    scan, _ = _scan(truth, 6)
    offset = planar_pose(0.5, -0.2, 0.3)                 # the registration's answer
    corrections = bend_onto_map(scan, offset, transform_points(offset, truth))
    assert np.abs(corrections[:, :2]).max() < 2e-3 and np.abs(corrections[:, 2]).max() < 5e-4
    placed = place(scan, offset, corrections)
    assert np.abs(placed - transform_points(offset, truth)).max() < 5e-3
