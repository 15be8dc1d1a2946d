"""Procedural rooms: deterministic, collision-free, with the changes users expect."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stseg_ros.benchmark.furniture import FAMILIES
from stseg_ros.benchmark.render import SceneRaycaster, render_frame
from stseg_ros.benchmark.scene import fits, is_moved, make_scenario, object_pose
from stseg_ros.core.camera import Intrinsics, backproject


def test_at_least_twelve_nyu40_families_with_varied_shapes():
    assert len(FAMILIES) >= 12
    rng = np.random.default_rng(0)
    for build in FAMILIES.values():
        a, b = build(rng), build(rng)
        assert a.class_id > 0
        assert a.parts != b.parts  # a family, not one fixed model


def test_same_seed_same_history_other_seed_other_room():
    a, b = make_scenario(np.random.default_rng(5), 4), make_scenario(np.random.default_rng(5), 4)
    assert [e.objects for e in a.epochs] == [e.objects for e in b.epochs]
    c = make_scenario(np.random.default_rng(6), 4)
    assert not np.array_equal(a.room.polygon, c.room.polygon)


@pytest.mark.parametrize("seed", range(8))
def test_rooms_are_plausible_and_objects_never_collide(seed):
    s = make_scenario(np.random.default_rng(seed), 5)
    lo, hi = s.room.polygon.min(0), s.room.polygon.max(0)
    assert 3.0 <= (hi - lo).min() and (hi - lo).max() <= 9.0
    assert 2.4 <= s.room.height <= 3.2
    for ep in s.epochs:
        ids = [o.id for o in ep.objects]
        assert len(ids) == len(set(ids))
        for o in ep.objects:
            assert fits(o, ep.objects, s.room, s.styles), f"epoch {ep.index}: {o} collides"


def test_histories_contain_every_kind_of_change_and_most_objects_stay():
    kinds, ambiguous, kept, total = set(), 0, 0, 0
    for seed in range(12):
        s = make_scenario(np.random.default_rng(seed), 4)
        for prev, ep in zip(s.epochs, s.epochs[1:], strict=False):
            kinds |= {c.kind for c in ep.changes}
            ambiguous += sum(c.ambiguous for c in ep.changes)
            before = {o.id: o for o in prev.objects}
            for o in ep.objects:
                if o.id in before:
                    total += 1
                    kept += (before[o.id].x, before[o.id].y) == (o.x, o.y)
    assert kinds == {"added", "removed", "moved"}
    assert ambiguous > 0  # identical objects were swapped
    assert kept / total > 0.6


def test_true_changes_match_the_poses_of_consecutive_epochs():
    s = make_scenario(np.random.default_rng(3), 5)
    for prev, ep in zip(s.epochs, s.epochs[1:], strict=False):
        before = {o.id: o for o in prev.objects}
        now = {o.id: o for o in ep.objects}
        moved = {c.object_id for c in ep.changes if c.kind == "moved"}
        for i in set(before) & set(now):
            a, b = before[i], now[i]
            assert (i in moved) == is_moved((a.x, a.y, a.yaw), (b.x, b.y, b.yaw))
        assert {c.object_id for c in ep.changes if c.kind == "removed"} == set(before) - set(now)
        assert {c.object_id for c in ep.changes if c.kind == "added"} == set(now) - set(before)


def test_move_thresholds():
    assert not is_moved((0, 0, 0), (0.15, 0, math.radians(10)))
    assert is_moved((0, 0, 0), (0.25, 0, 0))
    assert is_moved((0, 0, math.radians(175)), (0, 0, math.radians(-165)))


def _look_at_object(scenario, obj, distance=2.0, height=1.1):
    """Camera (optical frame: z forward, x right, y down) looking at an object."""
    target = object_pose(obj)[:3, 3] + (0, 0, 0.4)
    centre = scenario.room.polygon.mean(0)
    direction = target[:2] - centre
    direction /= max(np.linalg.norm(direction), 1e-6)
    eye = np.array([*(target[:2] - direction * distance), height])
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(forward, (0, 0, 1.0))
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], axis=1)
    pose[:3, 3] = eye
    return pose


def test_rendered_frame_labels_depth_and_sensor_artefacts():
    s = make_scenario(np.random.default_rng(2), 1)
    ep = s.epochs[0]
    obj = max(ep.objects, key=lambda o: s.styles[o.style].height)
    caster = SceneRaycaster(s, ep)
    intr = Intrinsics.default(0.5)
    pose = _look_at_object(s, obj)
    frame = render_frame(caster, pose, intr, ep, np.random.default_rng(0))
    assert frame.color.shape == (240, 320, 3) and frame.color.dtype == np.uint8
    assert frame.depth.shape == (240, 320)
    valid = frame.depth > 0
    assert 0.5 < valid.mean() < 1.0               # some returns are missing
    assert obj.id in np.unique(frame.instance)     # the object is labelled
    assert 0 < frame.depth[valid].min() and frame.depth.max() <= 5.5
    # back-projected object points lie near the object's box
    points, pixels = backproject(frame.depth, intr, pose)
    mine = frame.instance.reshape(-1)[pixels] == obj.id
    lo, hi = s.styles[obj.style].bounds()
    centre = object_pose(obj)[:3, 3] + (0, 0, (lo[2] + hi[2]) / 2)
    radius = np.linalg.norm(hi - lo) / 2 + 0.1
    dist = np.linalg.norm(points[mine] - centre, axis=1)
    assert np.median(dist) < radius
    # the same seed renders the same frame
    again = render_frame(caster, pose, intr, ep, np.random.default_rng(0))
    assert np.array_equal(again.depth, frame.depth)
