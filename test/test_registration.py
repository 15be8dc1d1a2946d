"""Registration of a revisit to the map: accurate on generated revisits, and
honest about failure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset
from stseg_ros.core.layout import read_cloud, read_epoch_result
from stseg_ros.mapping.registration import assess_alignment, register_scan
from stseg_ros.metrics.registration import relative_error


@pytest.fixture(scope="module")
def rooms(tmp_path_factory):
    out = tmp_path_factory.mktemp("reg")
    for seed in (0, 2):
        generate_dataset(out / str(seed), GenerateConfig(seed=seed, revisits=2, frames=0),
                         progress=False)
    return out


def _epoch(rooms, seed, t):
    path = rooms / str(seed) / "scene_000" / f"epoch_{t:02d}"
    return read_cloud(path)[0], read_epoch_result(path).map_from_odom


def test_revisit_registers_to_the_first_within_2_degrees_and_5_cm(rooms):
    for seed in (0, 2):
        map_xyz, first = _epoch(rooms, seed, 0)
        scan_xyz, truth = _epoch(rooms, seed, 1)
        assert not np.allclose(first, truth)           # each revisit has its own odom frame
        result = register_scan(scan_xyz, map_xyz)
        assert result.success, result.reason
        rot, trans = relative_error(truth, first, result.map_from_scan, np.eye(4))
        assert rot < 2.0 and trans < 0.05


def test_wrong_alignments_are_judged_failures(rooms):
    map_xyz, first = _epoch(rooms, 0, 0)
    scan_xyz, truth = _epoch(rooms, 0, 1)
    result = register_scan(scan_xyz, map_xyz)
    for degrees in (90, 180):               # a symmetric room's classic wrong answers
        a = math.radians(degrees)
        turn = np.eye(4)
        turn[:2, :2] = [[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]
        centre = scan_xyz.mean(0) @ result.map_from_scan[:3, :3].T + result.map_from_scan[:3, 3]
        turn[:2, 3] = centre[:2] - turn[:2, :2] @ centre[:2]
        verdict = assess_alignment(scan_xyz, map_xyz, turn @ result.map_from_scan)
        assert verdict.reason.startswith(("fitness", "overlap"))
        assert verdict.fitness < result.fitness / 2
    tilted = result.map_from_scan.copy()
    tilted[2, 3] += 0.5
    assert assess_alignment(scan_xyz, map_xyz, tilted).reason.startswith(
        ("not a floor-plane", "fitness", "overlap"))


def test_too_few_points_fail_cleanly():
    result = register_scan(np.zeros((10, 3)), np.random.default_rng(0).random((5000, 3)))
    assert not result.success and "too few" in result.reason



def test_a_coarse_fit_half_a_metre_off_is_drawn_in_and_the_fine_levels_choose(rooms):
    """Two ways a right alignment was lost in a nearly symmetric generated room
    (seed 1962): RANSAC left the right turn 0.4 m off, and the coarse ICP did
    not bring it back; and a fit turned by 180 degrees outscored it at the
    coarse level. Each candidate is now drawn into its basin from up to half
    a metre, and the best few are judged at the fine levels."""
    from stseg_ros.core.pointcloud import planar_pose
    from stseg_ros.mapping.registration import (
        RegistrationConfig,
        _finals,
        _Fit,
        _icp,
        _pull,
        _Pyramid,
    )

    cfg = RegistrationConfig()
    map_xyz, first = _epoch(rooms, 0, 0)
    scan_xyz, truth = _epoch(rooms, 0, 1)
    right = np.linalg.inv(first) @ truth                  # map_from_scan
    scan, target = _Pyramid(scan_xyz, cfg), _Pyramid(map_xyz, cfg)
    off = planar_pose(0.33, -0.3, 0.0) @ right             # 0.45 m off, the right turn
    drawn = _icp(scan, target, _pull(scan, target, off), slice(0, 1))
    assert relative_error(drawn.transformation, np.eye(4), right, np.eye(4))[1] < 0.05
    # a wrong turn given the better coarse fitness: the fine levels still choose right
    centre = map_xyz.mean(axis=0)
    turned = planar_pose(0.0, 0.0, math.pi)
    turned[:2, 3] = centre[:2] - turned[:2, :2] @ centre[:2]
    wrong = _icp(scan, target, turned @ right, slice(0, 1))
    wrong = _Fit(wrong.transformation, drawn.fitness + 0.05, wrong.inlier_rmse)
    transform, verdict, margin = _finals(scan, target, [wrong, drawn], cfg)
    rot, trans = relative_error(transform, np.eye(4), right, np.eye(4))
    assert rot < 2.0 and trans < 0.05 and verdict.reason == "ok" and margin > 0
