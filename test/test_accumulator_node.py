"""The accumulator node on a real ROS graph: bad input on its topics is
logged and skipped (one test per case) and the node goes on fusing; revisits
open and close through the services and the idle timeout."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from geometry_msgs.msg import TransformStamped
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from tf2_msgs.msg import TFMessage

from stseg_ros.core.images import encode_color, encode_compressed_depth
from stseg_ros.msg import RevisitScan
from stseg_ros.ros.accumulator_node import AccumulatorNode
from stseg_ros.ros.conversions import scan_from_msg
from stseg_ros.ros.qos import REVISIT_QOS
from stseg_ros.ros.replay import SpinThread
from stseg_ros.srv import BeginRevisit, EndRevisit

W, H, S = 64, 48, 1_000_000_000


def _stamp(msg, ns: int):
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, S)
    return msg


def _transform(parent: str, child: str, ns: int, x: float, z: float = 0.0,
               yaw: float = 0.0) -> TransformStamped:
    t = _stamp(TransformStamped(child_frame_id=child), ns)
    t.header.frame_id = parent
    t.transform.translation.x, t.transform.translation.z = x, z
    t.transform.rotation.z, t.transform.rotation.w = math.sin(yaw / 2), math.cos(yaw / 2)
    return t


def color_image(ns: int, encoding: str = "rgb8", width: int = W, height: int = H) -> Image:
    img = np.full((height, width, 3), 128, np.uint8)
    return _stamp(Image(height=height, width=width, encoding=encoding, step=width * 3,
                        data=img.tobytes(), header=_header("cam")), ns)


def depth_image(ns: int, metres: float = 2.0, width: int = W, height: int = H) -> Image:
    depth = np.full((height, width), metres, np.float32)
    return _stamp(Image(height=height, width=width, encoding="32FC1", step=width * 4,
                        data=depth.tobytes(), header=_header("cam")), ns)


def _header(frame: str):
    from std_msgs.msg import Header
    return Header(frame_id=frame)


class Rig:
    """An accumulator node and a node feeding it, spun on a background thread."""

    def __init__(self, rclpy, **params) -> None:
        overrides = [Parameter("max_fusion_rate_hz", value=0.0),
                     Parameter("idle_timeout_s", value=0.0),
                     Parameter("status_period_s", value=0.0)]
        overrides += [Parameter(k, value=v) for k, v in params.items()]
        self.node = AccumulatorNode(parameter_overrides=overrides)
        self.feeder = rclpy.create_node("feeder")
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        compressed = params.get("color_transport", "raw") != "raw"
        self.color = self.feeder.create_publisher(
            CompressedImage if compressed else Image,
            "camera/color/image_raw" + ("/compressed" if compressed else ""), reliable)
        self.depth = self.feeder.create_publisher(
            CompressedImage if compressed else Image,
            "camera/depth/image_raw" + ("/compressedDepth" if compressed else ""), reliable)
        self.info = self.feeder.create_publisher(CameraInfo, "camera/color/camera_info",
                                                 reliable)
        self.tf = self.feeder.create_publisher(TFMessage, "/tf", reliable)
        self.tf_static = self.feeder.create_publisher(TFMessage, "/tf_static", latched)
        self.scans: list[RevisitScan] = []
        self.feeder.create_subscription(RevisitScan, "revisits", self.scans.append,
                                        REVISIT_QOS)
        self.begin = self.feeder.create_client(BeginRevisit, "/accumulator/begin_revisit")
        self.end = self.feeder.create_client(EndRevisit, "/accumulator/end_revisit")
        self.spin = SpinThread(self.node, self.feeder)
        self.tf_static.publish(TFMessage(transforms=[
            _transform("base_link", "cam", 0, 0.1, 1.0)]))
        deadline = time.monotonic() + 10
        while min(p.get_subscription_count() for p in (self.color, self.depth, self.tf)) == 0:
            assert time.monotonic() < deadline, "the accumulator never subscribed"
            time.sleep(0.05)
        self.sent = 0

    def camera_info(self) -> None:
        k = [50.0, 0, (W - 1) / 2, 0, 50.0, (H - 1) / 2, 0, 0, 1]
        self.info.publish(CameraInfo(width=W, height=H, k=k, header=_header("cam")))

    def frame(self, ns: int, color: Image | None = None, depth: Image | None = None,
              x: float = 0.0) -> None:
        """Odometry around the stamp, then a colour/depth pair."""
        self.tf.publish(TFMessage(transforms=[_transform("odom", "base_link", ns - S // 20, x)]))
        self.tf.publish(TFMessage(transforms=[_transform("odom", "base_link", ns + S // 20, x)]))
        self.color.publish(color or color_image(ns))
        self.depth.publish(depth or depth_image(ns))
        self.sent += 1

    def settle(self, timeout: float = 10.0) -> tuple[int, int]:
        """Wait until every frame sent is fused or dropped; (fused, dropped)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.node.accumulator.status()
            if status and status[1] + status[2] >= self.sent:
                return status[1], status[2]
            assert time.monotonic() < deadline, f"frames not all handled: {status}"
            time.sleep(0.05)

    def close(self):
        return self.node.accumulator.end()

    def stop(self) -> None:
        self.spin.stop()
        self.node.destroy_node()
        self.feeder.destroy_node()


@pytest.fixture
def rig(rclpy_context):
    made = Rig(rclpy_context)
    yield made
    made.stop()


def _skipped_after_good_frames(rig, bad_frames, good_before=2, good_after=2):
    """Send good frames, the bad ones, then good ones; the revisit's result."""
    rig.camera_info()
    time.sleep(0.2)
    t = 10 * S
    for _ in range(good_before):
        t += S // 5
        rig.frame(t)
    for make in bad_frames:
        t += S // 5
        make(rig, t)
    for _ in range(good_after):
        t += S // 5
        rig.frame(t)
    rig.settle()
    result = rig.close()
    assert result.fused == good_before + good_after    # the node kept fusing
    return result.skipped


def test_unknown_encoding_is_skipped(rig):
    skipped = _skipped_after_good_frames(
        rig, [lambda r, t: r.frame(t, color=color_image(t, encoding="yuv422"))])
    assert any("unsupported image encoding 'yuv422'" in k for k in skipped), skipped


def test_size_mismatch_is_skipped(rig):
    def short_data(r, t):
        img = color_image(t)
        img.data = bytes(10)
        r.frame(t, color=img)

    skipped = _skipped_after_good_frames(
        rig, [lambda r, t: r.frame(t, depth=depth_image(t, width=32, height=24)), short_data])
    assert any("sizes differ" in k for k in skipped), skipped
    assert any("needs" in k and "bytes" in k for k in skipped), skipped


def test_nan_depth_is_skipped(rig):
    skipped = _skipped_after_good_frames(
        rig, [lambda r, t: r.frame(t, depth=depth_image(t, metres=float("nan")))])
    assert any("no valid pixel" in k for k in skipped), skipped


def test_frames_before_camera_info_are_skipped(rig):
    t = 10 * S
    for _ in range(2):
        t += S // 5
        rig.frame(t)
    rig.settle()
    rig.camera_info()
    time.sleep(0.3)
    for _ in range(2):
        t += S // 5
        rig.frame(t)
    rig.settle()
    result = rig.close()
    assert result.fused == 2
    assert result.skipped == {"no camera_info received yet": 2}


def test_stamps_out_of_order_are_skipped(rig):
    def older(r, t):
        r.frame(t - S // 2)           # earlier than the frame before it

    skipped = _skipped_after_good_frames(rig, [older])
    assert skipped == {"stamp not after the previous frame's": 1}


def test_a_looping_bag_is_noticed_and_fusing_goes_on(rig):
    rig.camera_info()
    time.sleep(0.2)
    for t in (100 * S, 100 * S + S // 5):
        rig.frame(t)
    rig.settle()
    for t in (1 * S, 1 * S + S // 5, 1 * S + 2 * S // 5):   # time starts over
        rig.frame(t)
    rig.settle()
    result = rig.close()
    assert result.skipped == {"time jumped back": 1}
    assert result.fused == 4
    assert rig.node.tf.resets == 1


def test_services_open_and_close_revisits_and_hand_them_to_the_mapper(rig):
    rig.camera_info()
    began = rig.begin.call_async(BeginRevisit.Request(label="monday"))
    _wait(began)
    assert began.result().success and began.result().revisit == 0
    t = 10 * S
    for k in range(6):
        t += S // 5
        rig.frame(t, x=0.02 * k)
    rig.settle()
    ended = rig.end.call_async(EndRevisit.Request())
    _wait(ended)
    answer = ended.result()
    assert (answer.success, answer.revisit, answer.frames_fused, answer.frames_dropped,
            answer.frames_overflow, answer.frames_thinned) == (True, 0, 6, 0, 0, 0)
    deadline = time.monotonic() + 10
    while not rig.scans:
        assert time.monotonic() < deadline, "no revisit reached the mapper's topic"
        time.sleep(0.05)
    msg = rig.scans[0]
    assert (msg.label, msg.frames_fused, msg.header.frame_id) == ("monday", 6, "odom")
    scan = scan_from_msg(msg)
    fragment = np.concatenate(scan.fragments)
    assert len(fragment) > 10
    # the plane 2 m along the optical axis of a camera mounted 1 m up, looking up
    assert np.median(fragment[:, 2]) == pytest.approx(3.0, abs=0.05)
    # the cameras' image-down direction reaches the mapper, for levelling
    assert np.linalg.norm(scan.camera_down) == pytest.approx(1.0, abs=1e-3)
    again = rig.end.call_async(EndRevisit.Request())
    _wait(again)
    assert not again.result().success                      # nothing open any more


def test_end_revisit_waits_for_the_images_sent_and_counts_every_one(rig):
    """A caller that says what it sent gets its revisit closed only once that
    arrived (the last frames come after the call here), and every image is
    accounted for: fused, unpaired, or missing."""
    rig.camera_info()
    _wait(rig.begin.call_async(BeginRevisit.Request(label="counted")))
    t = 10 * S
    for k in range(3):
        t += S // 5
        rig.frame(t, x=0.02 * k)
    rig.color.publish(color_image(t + S // 10))       # a colour image without its depth
    ended = rig.end.call_async(EndRevisit.Request(color_sent=6, depth_sent=6,
                                                  arrival_timeout_s=3.0))
    time.sleep(0.5)
    for k in range(3, 5):                             # still on the way when end was called
        t += S // 5
        rig.frame(t, x=0.02 * k)
    _wait(ended)
    answer = ended.result()
    assert answer.success and answer.frames_fused == 5, answer.message
    assert (answer.frames_received, answer.color_received, answer.depth_received) == (5, 6, 5)
    assert (answer.images_unpaired, answer.images_missing) == (1, 1)   # one depth never sent
    assert "1 image(s) sent never arrived" in answer.message


def test_idle_timeout_closes_the_revisit(rclpy_context):
    rig = Rig(rclpy_context, idle_timeout_s=1.0, auto_min_frames=0)
    try:
        rig.camera_info()
        time.sleep(0.2)
        rig.frame(10 * S)
        rig.frame(10 * S + S // 5)
        rig.settle()
        deadline = time.monotonic() + 10
        while rig.node.accumulator.status() is not None or not rig.scans:
            assert time.monotonic() < deadline, "the idle revisit was never closed"
            time.sleep(0.1)
        assert rig.scans[0].frames_fused == 2
    finally:
        rig.stop()


def _wait(future, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not future.done():
        assert time.monotonic() < deadline, "service did not answer"
        time.sleep(0.02)


def test_compressed_transports_are_fused(rclpy_context):
    """jpeg colour and compressedDepth depth, as realsense2_camera bags carry them."""
    rig = Rig(rclpy_context, color_transport="compressed", depth_transport="compressedDepth")
    try:
        rig.camera_info()
        time.sleep(0.2)
        for k in range(4):
            ns = 10 * S + k * S // 5
            fmt, data = encode_color(np.full((H, W, 3), 128, np.uint8))
            color = _stamp(CompressedImage(format=fmt, data=data, header=_header("cam")), ns)
            fmt, data = encode_compressed_depth(np.full((H, W), 2.0, np.float32))
            depth = _stamp(CompressedImage(format=fmt, data=data, header=_header("cam")), ns)
            rig.frame(ns, color=color, depth=depth, x=0.02 * k)
        assert rig.settle() == (4, 0)
        assert rig.close().fused == 4
    finally:
        rig.stop()


def label_image(ns: int, label: int, width: int = W, height: int = H) -> Image:
    ids = np.full((height, width), label, np.uint16)
    return _stamp(Image(height=height, width=width, encoding="mono16", step=width * 2,
                        data=ids.tobytes(), header=_header("cam")), ns)


def test_label_images_of_the_robots_2d_segmenter_reach_the_scan_and_are_accounted(
        rclpy_context):
    """Label images come after their frames (a 2D segmenter is slower than the
    camera): each is matched to its frame by stamp; one that never comes, one
    for no frame and an unreadable one are counted."""
    rig = Rig(rclpy_context, **{"labels.topic": "camera/labels/image_raw",
                                "labels.pixel_stride": 1,   # a 64x48 camera: every pixel
                                "auto_min_frames": 1})
    try:
        labels = rig.feeder.create_publisher(
            Image, "camera/labels/image_raw", QoSProfile(depth=50,
                                                         reliability=ReliabilityPolicy.RELIABLE))
        deadline = time.monotonic() + 10
        while labels.get_subscription_count() == 0:
            assert time.monotonic() < deadline, "the accumulator never subscribed to labels"
            time.sleep(0.05)
        rig.camera_info()
        time.sleep(0.2)
        stamps = [10 * S + k * S // 5 for k in range(1, 7)]
        for t in stamps:      # a wall between voxel centres, so the fused surface has points
            rig.frame(t, depth=depth_image(t, metres=2.013))
        rig.settle()
        for t in stamps[:5]:                      # the last frame's label never comes
            labels.publish(label_image(t, 7))
        labels.publish(label_image(99 * S, 7))    # a label image for no frame
        bad = label_image(stamps[0], 7)
        bad.encoding = "rgb8"
        labels.publish(bad)
        deadline = time.monotonic() + 10
        while rig.node.accumulator.received()["labels"] < 7:
            assert time.monotonic() < deadline, "the label images never all arrived"
            time.sleep(0.05)
        ended = rig.end.call_async(EndRevisit.Request())
        _wait(ended)
        answer = ended.result()
        assert answer.success and answer.frames_fused == 6
        # one label image never came; one matched no frame and one was unreadable
        assert (answer.frames_labelled, answer.frames_unlabelled,
                answer.label_images_unused) == (5, 1, 2)
        assert "5 frames labelled" in answer.message and "rgb8" in answer.message
        deadline = time.monotonic() + 10
        while not rig.scans:
            assert time.monotonic() < deadline, "no scan reached the mapper's topic"
            time.sleep(0.05)
        handed = scan_from_msg(rig.scans[-1])     # the mapper gets the evidence
        assert len(handed.xyz) > 100 and (handed.labels == 7).mean() > 0.9
        assert (handed.label_share[handed.labels == 7] == 1.0).all()
    finally:
        rig.stop()
