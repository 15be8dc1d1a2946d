"""Live ingest without ROS: the transform buffer, colour/depth pairing and the
accumulator's rate limit and revisit boundaries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stseg_ros.core.pointcloud import planar_pose
from stseg_ros.ingest.accumulator import AccumulatorConfig, RawFrame, RevisitAccumulator
from stseg_ros.ingest.sync import ApproximateTimeSync
from stseg_ros.ingest.tf_buffer import TfBuffer

S = 1_000_000_000


def _yaw_quaternion(yaw: float):
    return (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))


def test_lookup_composes_static_and_interpolated_dynamic_edges():
    tf = TfBuffer()
    tf.add("base_link", "camera", 0, (0.1, 0.0, 1.0), (0, 0, 0, 1), static=True)
    tf.add("odom", "base_link", 1 * S, (0.0, 0.0, 0.0), _yaw_quaternion(0.0))
    tf.add("odom", "base_link", 2 * S, (2.0, 0.0, 0.0), _yaw_quaternion(math.pi / 2))
    pose = tf.lookup("odom", "camera", int(1.5 * S))
    expected = planar_pose(1.0, 0.0, math.pi / 4) @ planar_pose(0.1, 0.0, 0.0, 1.0)
    np.testing.assert_allclose(pose, expected, atol=1e-9)
    # the inverse direction and a frame to itself
    np.testing.assert_allclose(tf.lookup("camera", "odom", int(1.5 * S)),
                               np.linalg.inv(expected), atol=1e-9)
    np.testing.assert_allclose(tf.lookup("camera", "camera", 0), np.eye(4))


def test_lookup_refuses_outside_the_known_interval_and_unknown_frames():
    tf = TfBuffer()
    tf.add("odom", "base_link", 1 * S, (0, 0, 0), (0, 0, 0, 1))
    tf.add("odom", "base_link", 2 * S, (1, 0, 0), (0, 0, 0, 1))
    assert tf.lookup("odom", "base_link", 3 * S) is None          # no extrapolation
    assert tf.lookup("odom", "base_link", 2 * S + 10, tolerance_ns=100) is not None
    assert tf.lookup("odom", "camera", int(1.5 * S)) is None       # not connected
    with pytest.raises(ValueError):
        tf.add("odom", "base_link", 3 * S, (np.nan, 0, 0), (0, 0, 0, 1))
    with pytest.raises(ValueError):
        tf.add("odom", "odom", 3 * S, (0, 0, 0), (0, 0, 0, 1))


def test_time_jumping_back_drops_the_old_history():
    tf = TfBuffer(jump_back_s=1.0)
    tf.add("odom", "base_link", 100 * S, (5, 0, 0), (0, 0, 0, 1))
    tf.add("odom", "base_link", 101 * S, (6, 0, 0), (0, 0, 0, 1))
    tf.add("odom", "base_link", 1 * S, (0, 0, 0), (0, 0, 0, 1))    # the bag looped
    assert tf.resets == 1
    assert tf.lookup("odom", "base_link", int(100.5 * S)) is None
    assert tf.lookup("odom", "base_link", 1 * S)[0, 3] == 0.0


def test_sync_pairs_the_closest_partner_within_the_slop():
    sync = ApproximateTimeSync(slop_ns=10)
    assert sync.add("color", 100, "c100") is None
    assert sync.add("color", 200, "c200") is None
    pair = sync.add("depth", 203, "d203")
    assert (pair.stamp_ns, pair.color, pair.depth) == (200, "c200", "d203")
    assert sync.unpaired == 1                          # c100 can never pair now
    assert sync.add("depth", 400, "d400") is None
    assert sync.add("color", 450, "c450") is None      # too far apart


def _frames(acc: RevisitAccumulator, stamps) -> None:
    for ns in stamps:      # no camera_info: fusion skips them, the limiter counts first
        acc.submit(RawFrame(int(ns), None, None, None, "cam"))


@pytest.mark.parametrize("camera_hz, fused_hz", [(30, 15), (20, 15), (60, 15), (10, 10)])
def test_fusion_rate_limit_holds_the_rate_despite_stamp_jitter(camera_hz, fused_hz):
    acc = RevisitAccumulator(TfBuffer(), lambda result: None,
                             AccumulatorConfig(max_fusion_rate_hz=15.0, queue_frames=1000))
    rng = np.random.default_rng(0)
    seconds = 4
    n = camera_hz * seconds
    _frames(acc, np.arange(n) * S / camera_hz + rng.uniform(-3e6, 3e6, n) + 10 * S)
    result = acc.end()
    assert result.fused + result.dropped + result.thinned == n
    assert result.fused + result.dropped == pytest.approx(fused_hz * seconds, abs=2)
    acc.shutdown()


def test_frames_still_in_flight_after_a_close_do_not_open_a_revisit():
    closed = []
    acc = RevisitAccumulator(TfBuffer(), closed.append,
                             AccumulatorConfig(max_fusion_rate_hz=0, auto_min_frames=0))
    _frames(acc, [10 * S, 10 * S + S // 30])
    assert acc.end().revisit == 0
    _frames(acc, [10 * S + 2 * S // 30, 10 * S + 3 * S // 30])   # sent before the close
    assert acc.status() is None and acc.frames_without_revisit == 2
    assert acc.begin("next") == 1                # an explicit begin opens the next one
    _frames(acc, [11 * S])
    assert acc.end().dropped == 1 and [r.revisit for r in closed] == [0, 1]
    acc.shutdown()


def test_late_frames_of_a_closed_revisit_are_counted_in_the_next_and_fused_in_neither():
    acc = RevisitAccumulator(TfBuffer(), lambda result: None,
                             AccumulatorConfig(max_fusion_rate_hz=0))
    acc.begin("first")
    _frames(acc, [10 * S, 10 * S + S // 10])
    assert acc.end().frames == 2
    acc.begin("second")
    _frames(acc, [10 * S + S // 20])           # sent before the close, arriving after it
    _frames(acc, [20 * S, 20 * S + S // 10])   # the second revisit's own
    second = acc.end()
    assert second.arrivals.late == 1
    assert second.frames == 3 and second.fused + second.dropped == 2
    acc.shutdown()


def test_a_bag_replayed_twice_is_not_late():
    acc = RevisitAccumulator(TfBuffer(), lambda result: None,
                             AccumulatorConfig(max_fusion_rate_hz=0))
    stamps = 10 * S + np.arange(30) * S // 10       # 3 s of frames, twice
    for label in ("once", "twice"):
        acc.begin(label)
        _frames(acc, stamps)
        result = acc.end()
        assert result.arrivals.late == 0 and result.fused + result.dropped == 30
    acc.shutdown()


def test_stray_frames_opening_a_revisit_do_not_become_an_epoch():
    handed = []
    acc = RevisitAccumulator(TfBuffer(), handed.append,
                             AccumulatorConfig(max_fusion_rate_hz=0, auto_min_frames=3))
    _frames(acc, [10 * S, 10 * S + S // 10])        # no begin: auto-opened, nothing fused
    assert acc.end().scan is None and handed == []
    acc.begin("asked for")                          # an explicit revisit is always mapped
    _frames(acc, [20 * S])
    acc.end()
    assert [r.label for r in handed] == ["asked for"]
    acc.shutdown()


def test_images_waiting_for_a_partner_at_a_close_are_counted_unpaired_there():
    sync = ApproximateTimeSync(slop_ns=S // 100)
    acc = RevisitAccumulator(TfBuffer(), lambda result: None,
                             AccumulatorConfig(max_fusion_rate_hz=0), waiting_images=sync.flush)
    acc.begin("a")
    for kind in ("color", "depth", "color"):         # a pair, then a colour image alone
        acc.arrived(kind)
    assert sync.add("color", 10 * S, "c") is None
    assert sync.add("depth", 10 * S, "d") is not None
    assert sync.add("color", 11 * S, "c2") is None
    result = acc.end()
    assert (result.arrivals.color, result.arrivals.depth, result.arrivals.unpaired) == (2, 1, 1)
    acc.begin("b")                                   # the lone image cannot pair into it
    assert sync.add("depth", 11 * S, "d2") is None
    acc.shutdown()


def test_label_images_are_matched_to_their_frames_before_any_is_decoded():
    """Of a 30 Hz camera thinned to 15 Hz, half the label images belong to frames
    never fused: counted, not queued; one arriving before its frame waits for it."""
    from stseg_ros.mapping.labels import LabelConfig

    closed = []
    acc = RevisitAccumulator(TfBuffer(), closed.append,
                             AccumulatorConfig(max_fusion_rate_hz=15.0, auto_min_frames=0),
                             labels=LabelConfig(topic="labels"))
    acc.submit_labels(5 * S, "no revisit is open")
    assert acc.labels_without_revisit == 1
    acc.begin("r")
    stamps = [10 * S + k * S // 30 for k in range(6)]
    acc.submit_labels(stamps[0], "before its frame")       # waits for it
    for t in stamps:
        acc.submit(RawFrame(t, None, None, None, "cam"))
        if t != stamps[0]:
            acc.submit_labels(t, "after its frame")
    acc.submit_labels(99 * S, "for no frame")
    assert acc.received()["labels"] == 7
    result = acc.end()
    assert result.thinned == 3
    assert result.labels.not_fused == 3                    # their frames were thinned
    assert result.labels.unmatched == 1                    # the one for no frame
    # the other three reached the worker, which could not decode them (not images)
    assert sum(result.labels.refused.values()) == 3


def test_a_closed_revisit_frees_its_fusion_volume():
    """The worker waiting for the next revisit holds nothing of the last one:
    its TSDF volume (200 MB reserved) goes with it."""
    import gc
    import weakref

    acc = RevisitAccumulator(TfBuffer(), lambda result: None,
                             AccumulatorConfig(max_fusion_rate_hz=0))
    acc.begin("r")
    volume = weakref.ref(acc._current.fusion.tsdf)          # noqa: SLF001
    _frames(acc, [10 * S])
    assert acc.end().revisit == 0
    gc.collect()
    assert volume() is None
    acc.shutdown()
