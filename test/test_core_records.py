"""Core records, queries, snapshots and classes behave as users rely on."""

from __future__ import annotations

import json
import math

import pytest

from stseg_ros.core.classes import class_id, class_name
from stseg_ros.core.colors import identity_color
from stseg_ros.core.query import ObjectQuery, filter_objects
from stseg_ros.core.records import ChangeKind, ChangeRecord, ObjectRecord, ObjectState, Pose
from stseg_ros.core.report import format_changes, format_objects
from stseg_ros.core.snapshot import SnapshotError, example_snapshot, load_snapshot


def _obj(i, cid, xyz, state=ObjectState.PRESENT):
    return ObjectRecord(i, cid, class_name(cid), 0.9, Pose(xyz), (1, 1, 1), 10, 0, 0, state)


def test_nyu40_names_and_ids_map_both_ways():
    assert class_name(5) == "chair" and class_id("Chair") == 5
    assert class_id("night_stand") == 32
    assert class_name(0) == "unknown" and class_name(99) == "unknown"
    with pytest.raises(ValueError, match="unknown NYU40"):
        class_id("spaceship")


def test_pose_yaw_and_change_geometry():
    a = Pose.from_xyz_yaw(0, 0, 0, math.radians(170))
    b = Pose.from_xyz_yaw(3, 4, 0, math.radians(-170))
    assert a.yaw == pytest.approx(math.radians(170))
    moved = ChangeRecord(ChangeKind.MOVED, 1, 5, "chair", 1, a, b)
    assert moved.displacement == pytest.approx(5.0)
    assert moved.rotation == pytest.approx(math.radians(20))  # wraps through 180 deg
    added = ChangeRecord(ChangeKind.ADDED, 1, 5, "chair", 1, a, b)
    assert added.displacement == 0.0 and added.rotation == 0.0


def test_query_combines_filters_with_and():
    objects = [_obj(1, 5, (0, 0, 0)), _obj(2, 5, (5, 5, 0)), _obj(3, 7, (1, 1, 0)),
               _obj(4, 5, (1, 1, 0), ObjectState.REMOVED)]
    assert [o.id for o in filter_objects(objects, ObjectQuery())] == [1, 2, 3, 4]
    near = ObjectQuery(class_names={"CHAIR"}, region=((-1, -1, -1), (2, 2, 1)))
    assert [o.id for o in filter_objects(objects, near)] == [1, 4]
    present = ObjectQuery(class_ids={5}, states={ObjectState.PRESENT}, ids={2, 4})
    assert [o.id for o in filter_objects(objects, present)] == [2]


def test_query_rejects_inverted_region():
    with pytest.raises(ValueError, match="exceeds"):
        ObjectQuery(region=((1, 0, 0), (0, 1, 1)))


def test_identity_colours_are_stable_and_distinct():
    assert identity_color(12) == identity_color(12)
    colours = {tuple(round(c, 3) for c in identity_color(i)) for i in range(1, 50)}
    assert len(colours) == 49
    assert all(0.0 <= c <= 1.0 for c in identity_color(7))


def test_example_snapshot_tells_a_consistent_story():
    snap = example_snapshot()
    assert [e.epoch for e in snap.epochs] == [0, 1, 2]
    last = {o.id: o for o in snap.epochs[-1].objects}
    moved = [c for c in snap.epochs[-1].changes if c.kind == ChangeKind.MOVED]
    for change in moved:
        assert last[change.object_id].pose.position == pytest.approx(
            change.current_pose.position)
    text = format_objects(snap.epochs[-1].objects) + format_changes(moved)
    assert "chair" in text and "moved" in text


@pytest.mark.parametrize("content, reason", [
    ("not json at all", "not valid JSON"),
    (json.dumps({"format": "something.else"}), "not a stseg_ros.snapshot"),
    (json.dumps({"format": "stseg_ros.snapshot", "version": 99, "epochs": []}), "version 99"),
    (json.dumps({"format": "stseg_ros.snapshot", "version": 1, "epochs": []}), "non-empty"),
    (json.dumps({"format": "stseg_ros.snapshot", "version": 1,
                 "epochs": [{"epoch": 1}, {"epoch": 1}]}), "not increasing"),
    (json.dumps({"format": "stseg_ros.snapshot", "version": 1,
                 "epochs": [{"objects": [{"class_id": 5}]}]}), "missing field 'id'"),
    (json.dumps({"format": "stseg_ros.snapshot", "version": 1,
                 "epochs": [{"objects": [{"id": 1, "position": [1, 2]}]}]}), "expected 3"),
    (json.dumps({"format": "stseg_ros.snapshot", "version": 1,
                 "epochs": [{"objects": [{"id": 1, "state": "gone"}]}]}), "not one of"),
    (json.dumps({"format": "stseg_ros.snapshot", "version": 1,
                 "epochs": [{"objects": [{"id": 1}, {"id": 1}]}]}), "twice"),
])
def test_bad_snapshots_are_refused_with_the_reason(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(SnapshotError, match=reason):
        load_snapshot(path)
    assert path.read_text() == content  # never modified


def test_missing_snapshot_file_is_a_clear_error(tmp_path):
    with pytest.raises(SnapshotError, match="cannot read"):
        load_snapshot(tmp_path / "nope.json")
