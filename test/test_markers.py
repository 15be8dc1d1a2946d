"""RViz markers: one colour per identity, labels, deletion of removed objects."""

from __future__ import annotations

from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from stseg_ros.core.records import ChangeKind, ChangeRecord, ObjectRecord, ObjectState, Pose
from stseg_ros.ros.conversions import object_from_msg, object_to_msg
from stseg_ros.ros.markers import (
    BOX_NAMESPACE,
    CHANGE_NAMESPACE,
    LABEL_NAMESPACE,
    object_markers,
)


def _obj(i, state=ObjectState.PRESENT):
    return ObjectRecord(i, 5, "chair", 0.5, Pose.from_xyz_yaw(1, 2, 0.45, 0.3),
                        (0.5, 0.6, 0.9), 10, 0, 2, state)


def test_boxes_and_labels_per_identity():
    markers = object_markers([_obj(12), _obj(13)], Header(frame_id="map")).markers
    boxes = [m for m in markers if m.ns == BOX_NAMESPACE]
    labels = {m.id: m.text for m in markers if m.ns == LABEL_NAMESPACE}
    assert [m.id for m in boxes] == [12, 13]
    assert labels == {12: "chair #12", 13: "chair #13"}
    assert (boxes[0].scale.x, boxes[0].scale.y, boxes[0].scale.z) == (0.5, 0.6, 0.9)
    assert (boxes[0].color.r, boxes[0].color.g) != (boxes[1].color.r, boxes[1].color.g)
    again = next(m for m in object_markers([_obj(12)], Header(frame_id="map")).markers
                 if m.ns == BOX_NAMESPACE)
    assert again.color == boxes[0].color  # colour fixed per identity
    assert all(m.header.frame_id == "map" for m in markers)


def test_removed_objects_are_deleted_and_unobserved_faded():
    markers = object_markers([_obj(1, ObjectState.REMOVED), _obj(2, ObjectState.UNOBSERVED)],
                             Header(frame_id="map")).markers
    by_key = {(m.ns, m.id): m for m in markers}
    assert by_key[(BOX_NAMESPACE, 1)].action == Marker.DELETE
    assert by_key[(LABEL_NAMESPACE, 1)].action == Marker.DELETE
    assert by_key[(BOX_NAMESPACE, 2)].color.a < 0.5
    assert "unobserved" in by_key[(LABEL_NAMESPACE, 2)].text


def test_record_message_round_trip():
    obj = _obj(7, ObjectState.UNOBSERVED)
    back = object_from_msg(object_to_msg(obj))
    assert back == obj


def test_moves_get_an_arrow_from_old_to_new_place_and_others_lose_theirs():
    moved = ChangeRecord(ChangeKind.MOVED, 12, 5, "chair", 2, Pose.from_xyz_yaw(0, 0, 0.45, 0),
                         Pose.from_xyz_yaw(1, 2, 0.45, 0.3))
    markers = object_markers([_obj(12), _obj(13)], Header(frame_id="map"), [moved]).markers
    arrows = {m.id: m for m in markers if m.ns == CHANGE_NAMESPACE}
    assert arrows[12].type == Marker.ARROW and arrows[12].action == Marker.ADD
    start, end = arrows[12].points
    assert (start.x, start.y, end.x, end.y) == (0.0, 0.0, 1.0, 2.0)
    assert arrows[13].action == Marker.DELETE       # last epoch's arrow goes away
