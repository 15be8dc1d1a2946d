"""~/detections: the present objects of an epoch as vision_msgs/Detection3DArray
for planners, the vision_msgs types it uses, and what building and publishing
it costs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray

from stseg_ros.core.records import ObjectRecord, ObjectState, Pose
from stseg_ros.core.snapshot import EpochState
from stseg_ros.ros.conversions import detections_to_msg

# Type hashes of upstream vision_msgs 4.1.1 (the definitions the pip set-up's
# stand-in follows; a ROS installation's vision_msgs 4.x has the same ones).
UPSTREAM_TYPE_HASHES = {
    "Detection3DArray": "RIHS01_793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018",
    "Detection3D": "RIHS01_ddd703be132ab0b69d33121f1bb034132bfbb3b0ac5f9fb1516005ba1c8a265b",
    "ObjectHypothesisWithPose":
        "RIHS01_41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc",
    "ObjectHypothesis": "RIHS01_51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90",
    "BoundingBox3D": "RIHS01_bbb73a65c163d7f9bb29009c7bde9f7faa576bd2d23299c4511d19230dab4698",
}


def _object(oid: int, state: ObjectState = ObjectState.PRESENT, **kw) -> ObjectRecord:
    fields = dict(id=oid, class_id=5, class_name="chair", score=0.8,
                  pose=Pose.from_xyz_yaw(1.0, 2.0, 0.45, 0.5), extents=(0.5, 0.6, 0.9),
                  num_points=100, epoch_first_seen=0, epoch_last_seen=2, state=state)
    fields.update(kw)
    return ObjectRecord(**fields)


def test_detections_hold_present_objects_with_id_class_score_and_box():
    header = Header(frame_id="map")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    objects = [
        _object(3),
        _object(70000, class_id=7, class_name="table", score=0.25,
                pose=Pose.from_xyz_yaw(-4.0, 0.5, 0.375, -1.0), extents=(1.5, 0.75, 0.75)),
        _object(8, ObjectState.REMOVED),
        _object(9, ObjectState.UNOBSERVED),
    ]
    msg = detections_to_msg(objects, header)
    assert isinstance(msg, Detection3DArray)
    assert msg.header.frame_id == "map"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 345)
    assert [d.id for d in msg.detections] == ["3", "70000"]
    for det, obj in zip(msg.detections, objects[:2], strict=True):
        assert det.header == msg.header
        assert len(det.results) == 1
        hyp = det.results[0]
        assert hyp.hypothesis.class_id == obj.class_name
        assert hyp.hypothesis.score == pytest.approx(obj.score)
        c = det.bbox.center
        assert (c.position.x, c.position.y, c.position.z) == pytest.approx(obj.pose.position)
        assert (c.orientation.x, c.orientation.y, c.orientation.z, c.orientation.w) == (
            pytest.approx(obj.pose.orientation))
        assert hyp.pose.pose == c
        assert (det.bbox.size.x, det.bbox.size.y, det.bbox.size.z) == pytest.approx(obj.extents)
    assert list(msg.detections[0].results[0].pose.covariance) == [0.0] * 36


def test_no_present_objects_give_an_empty_array():
    msg = detections_to_msg([_object(1, ObjectState.REMOVED)], Header(frame_id="map"))
    assert msg.detections == [] and msg.header.frame_id == "map"


def test_vision_msgs_types_match_upstream():
    """Field names and types as upstream's: same type hashes, so the topic
    interoperates with nodes built against the real vision_msgs."""
    import vision_msgs

    share = Path(vision_msgs.__file__).resolve().parents[4] / "share" / "vision_msgs" / "msg"
    if not (share / "Detection3DArray.json").is_file():
        pytest.skip(f"no type descriptions installed in {share}")
    for name, expected in UPSTREAM_TYPE_HASHES.items():
        described = json.loads((share / f"{name}.json").read_text())
        hashes = {h["type_name"]: h["hash_string"] for h in described["type_hashes"]}
        assert hashes[f"vision_msgs/msg/{name}"] == expected, name


def test_cost_of_detections_for_1000_objects(rclpy_context, capsys):
    """Build and publish ~/detections for 1,000 present objects (the figure in
    the README); a generous bound only catches a gross regression."""
    from rclpy.node import Node

    from stseg_ros.ros.map_publisher import MapPublisher

    node = Node("detections_cost")
    try:
        publisher = MapPublisher(node, "map")
        objects = [_object(i, pose=Pose.from_xyz_yaw(i * 0.01, 0.0, 0.5, 0.1 * i))
                   for i in range(1000)]
        header = Header(frame_id="map")
        times = []
        for _ in range(5):
            start = time.perf_counter()
            publisher._detections.publish(detections_to_msg(objects, header))
            times.append(time.perf_counter() - start)
        best = min(times)
        with capsys.disabled():
            print(f"\n~/detections, 1000 objects: build + publish {best * 1e3:.1f} ms "
                  f"(best of 5; median {sorted(times)[2] * 1e3:.1f} ms)")
        assert best < 1.0
        # The whole epoch, for comparison: instances, detections, markers, changes.
        start = time.perf_counter()
        publisher.publish(EpochState(epoch=0, objects=objects))
        whole = time.perf_counter() - start
        with capsys.disabled():
            print(f"whole epoch publish, 1000 objects: {whole * 1e3:.1f} ms")
    finally:
        node.destroy_node()
