"""Typed instances, change events and the query service between two processes
over real rclpy with the generated interfaces."""

from __future__ import annotations

import json
import math
import subprocess
import time

import pytest
from conftest import REPO_ROOT

from stseg_ros.core.records import ChangeKind, ObjectState
from stseg_ros.ros.demo import stop_process

SNAPSHOT = {
    "format": "stseg_ros.snapshot", "version": 1, "map_frame": "test_map",
    "epochs": [
        {"epoch": 0, "objects": [
            {"id": 3, "class_id": 5, "position": [1.0, 2.0, 0.45], "yaw": 0.0,
             "extents": [0.5, 0.5, 0.9], "num_points": 100}]},
        {"epoch": 4, "label": "later", "objects": [
            {"id": 3, "class_id": 5, "score": 0.75, "position": [2.5, -1.25, 0.45],
             "yaw": 1.0, "extents": [0.5, 0.5, 0.9], "num_points": 1234,
             "epoch_first_seen": 0, "epoch_last_seen": 4, "state": "present"},
            {"id": 17, "class_id": 7, "score": 0.5, "position": [4.0, 4.0, 0.375],
             "extents": [1.5, 0.75, 0.75], "num_points": 4000,
             "epoch_first_seen": 0, "epoch_last_seen": 0, "state": "unobserved"},
            {"id": 40000, "class_id": 35, "position": [0.25, 0.5, 0.75],
             "extents": [0.25, 0.25, 1.5], "epoch_first_seen": 0, "epoch_last_seen": 0,
             "state": "removed"}],
         "changes": [
            {"kind": "moved", "object_id": 3, "class_id": 5, "confidence": 0.5,
             "previous_position": [1.0, 2.0, 0.45], "previous_yaw": 0.0,
             "current_position": [2.5, -1.25, 0.45], "current_yaw": 1.0},
            {"kind": "removed", "object_id": 40000, "class_id": 35,
             "previous_position": [0.25, 0.5, 0.75]}]}]}


@pytest.fixture
def map_server(tmp_path, python):
    path = tmp_path / "snapshot.json"
    path.write_text(json.dumps(SNAPSHOT))
    proc = subprocess.Popen(
        [python, "-m", "stseg_ros.ros.map_server", "--ros-args",
         "--params-file", str(REPO_ROOT / "config/mapping.yaml"),
         "-p", f"snapshot:={path}", "-p", "epoch_period:=0.0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    yield proc
    assert stop_process(proc) == 0, proc.stdout.read()


@pytest.fixture
def client(rclpy_context, map_server):
    from stseg_ros.ros.map_client import MapClient

    node = MapClient("/map_server", name="test_client")
    assert node.spin_until(lambda: 4 in node.instances and 4 in node.changes, 30.0), (
        "no map state received from the map_server process")
    yield node
    node.destroy_node()


def test_instances_round_trip_between_processes(client):
    assert client.map_frame == "test_map"
    objects = {o.id: o for o in client.instances[4]}
    assert sorted(objects) == [3, 17, 40000]
    chair = objects[3]
    assert (chair.class_id, chair.class_name, chair.num_points) == (5, "chair", 1234)
    assert chair.score == pytest.approx(0.75)
    assert chair.pose.position == pytest.approx((2.5, -1.25, 0.45))
    assert chair.pose.yaw == pytest.approx(1.0)
    assert chair.extents == pytest.approx((0.5, 0.5, 0.9))
    assert (chair.epoch_first_seen, chair.epoch_last_seen) == (0, 4)
    assert chair.state == ObjectState.PRESENT
    assert objects[17].state == ObjectState.UNOBSERVED
    assert objects[17].class_name == "table"
    assert objects[40000].state == ObjectState.REMOVED


def test_change_events_round_trip_between_processes(client):
    moved, removed = client.changes[4]
    assert moved.kind == ChangeKind.MOVED and moved.object_id == 3 and moved.epoch == 4
    assert moved.previous_pose.position == pytest.approx((1.0, 2.0, 0.45))
    assert moved.current_pose.position == pytest.approx((2.5, -1.25, 0.45))
    assert moved.displacement == pytest.approx(math.dist((1.0, 2.0), (2.5, -1.25)), rel=1e-6)
    assert moved.rotation == pytest.approx(1.0)
    assert moved.confidence == pytest.approx(0.5)
    assert removed.kind == ChangeKind.REMOVED and removed.class_name == "lamp"


def test_query_service_filters_across_processes(client):
    def ids(**filters):
        answer = client.query(**filters)
        assert answer.success, answer.message
        assert answer.epoch == 4
        return sorted(i.id for i in answer.instances)

    assert ids() == [3, 17, 40000]
    assert ids(class_names=["chair"]) == [3]
    assert ids(class_ids=[7, 35]) == [17, 40000]
    assert ids(ids=[17, 99]) == [17]
    assert ids(states=[ObjectState.PRESENT, ObjectState.UNOBSERVED]) == [3, 17]
    assert ids(region=((2.0, -2.0, 0.0), (5.0, 5.0, 1.0))) == [3, 17]
    assert ids(class_names=["chair"], region=((3.0, 3.0, 0.0), (5.0, 5.0, 1.0))) == []
    answer = client.query(class_ids=[5])
    chair = answer.instances[0]
    assert (chair.num_points, chair.epoch_last_seen) == (1234, 4)
    assert chair.pose.position.x == pytest.approx(2.5)


def test_query_service_rejects_bad_requests(client):
    answer = client.query(region=((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)))
    assert not answer.success and "exceeds" in answer.message


def test_detections_reach_another_process(rclpy_context, map_server):
    """~/detections (vision_msgs/Detection3DArray) holds the present objects of
    the published epoch only: id, class name, score, box centre and size."""
    from rclpy.node import Node
    from vision_msgs.msg import Detection3DArray

    from stseg_ros.ros.qos import MAP_STATE_QOS

    received: list[Detection3DArray] = []
    node = Node("test_detections")
    try:
        node.create_subscription(Detection3DArray, "/map_server/detections",
                                 received.append, MAP_STATE_QOS)
        deadline = time.monotonic() + 30.0
        while not received and time.monotonic() < deadline:
            rclpy_context.spin_once(node, timeout_sec=0.1)
        assert received, "no detections received from the map_server process"
    finally:
        node.destroy_node()
    msg = received[-1]
    assert msg.header.frame_id == "test_map"
    assert msg.header.stamp.sec > 0
    # Epoch 4: 3 is present; 17 (unobserved) and 40000 (removed) are not detections.
    present = [o for o in SNAPSHOT["epochs"][1]["objects"] if o["state"] == "present"]
    assert [d.id for d in msg.detections] == [str(o["id"]) for o in present] == ["3"]
    (det,) = msg.detections
    assert det.header.frame_id == "test_map"
    (hyp,) = det.results
    assert hyp.hypothesis.class_id == "chair"
    assert hyp.hypothesis.score == pytest.approx(0.75)
    centre = det.bbox.center
    assert (centre.position.x, centre.position.y, centre.position.z) == pytest.approx(
        (2.5, -1.25, 0.45))
    assert (centre.orientation.z, centre.orientation.w) == pytest.approx(
        (math.sin(0.5), math.cos(0.5)))
    assert hyp.pose.pose.position.x == pytest.approx(2.5)
    assert (det.bbox.size.x, det.bbox.size.y, det.bbox.size.z) == pytest.approx((0.5, 0.5, 0.9))
