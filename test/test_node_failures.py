"""Nodes that fail say so: a mapper whose memory breaks under it stops with the
reason instead of running on and mapping nothing; a restarted mapper answers
where its map stands at once (``replay --wait`` counts from it); ``replay``
notices an accumulator that died instead of waiting out its timeouts."""

from __future__ import annotations

import signal
import sqlite3
import time

import numpy as np
import pytest

from stseg_ros.core.records import ObjectRecord, ObjectState, Pose
from stseg_ros.memory import EpochEntry, EpochPoints, ObjectMemory
from stseg_ros.ros.demo import start_node, stop_process
from stseg_ros.ros.env import localhost_ros_env


def _memory_with_one_epoch(path):
    chair = ObjectRecord(1, 5, "chair", 0.9, Pose.from_xyz_yaw(1.0, 1.0, 0.4, 0.0),
                         (0.5, 0.5, 0.9), 100, 0, 0, ObjectState.PRESENT)
    rng = np.random.default_rng(0)
    points = EpochPoints(rng.random((100, 3), dtype=np.float32),
                         rng.integers(0, 255, (100, 3), dtype=np.uint8),
                         np.zeros(100, np.int32), np.ones(100, np.int32))
    with ObjectMemory(path) as memory:
        memory.commit_epoch(EpochEntry(0, True, np.eye(4), "day 1", num_points=100),
                            [chair], [], points)


def _wait_for_line(log, text: str, proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, f"no {text!r} in:\n{log.read_text()}"
        time.sleep(0.1)


def test_a_mapper_whose_memory_breaks_stops_with_the_reason(tmp_path, rclpy_context):
    from stseg_ros.msg import RevisitScan
    from stseg_ros.ros.qos import REVISIT_QOS

    db, log = tmp_path / "memory.db", tmp_path / "mapper.log"
    _memory_with_one_epoch(db)
    proc = start_node("mapper", "-p", f"db_path:={db}",
                      "-p", "segmentation.segmenter:=geometric", env=localhost_ros_env(), log=log)
    try:
        _wait_for_line(log, "object memory", proc)
        # damage every page but the schema and meta pages, which the mapper read at start
        with sqlite3.connect(db) as con:
            page = con.execute("PRAGMA page_size").fetchone()[0]
            kept = {1} | {r[0] for r in con.execute(
                "SELECT rootpage FROM sqlite_master WHERE name = 'meta'")}
        data = bytearray(db.read_bytes())
        for k in range(len(data) // page):
            if k + 1 not in kept:
                data[k * page:(k + 1) * page] = b"\xa5" * page
        db.write_bytes(bytes(data))
        node = rclpy_context.create_node("revisit_sender")
        pub = node.create_publisher(RevisitScan, "revisits", REVISIT_QOS)
        deadline = time.monotonic() + 60
        while proc.poll() is None:        # until the mapper takes a revisit and stops
            assert time.monotonic() < deadline, log.read_text()
            pub.publish(RevisitScan(label="after the damage"))
            time.sleep(0.5)
        node.destroy_node()
    finally:
        code = stop_process(proc)
    out = log.read_text()
    assert code == 1, out
    assert "mapper stopped: object memory" in out and str(db) in out
    assert "Traceback" not in out


@pytest.fixture
def mapper_on_a_stored_map(tmp_path):
    db, log = tmp_path / "memory.db", tmp_path / "mapper.log"
    _memory_with_one_epoch(db)
    proc = start_node("mapper", "-p", f"db_path:={db}",
                      "-p", "segmentation.segmenter:=geometric", env=localhost_ros_env(), log=log)
    yield proc, log
    assert stop_process(proc) == 0, log.read_text()


def test_a_restarted_mapper_answers_where_its_map_stands_at_once(mapper_on_a_stored_map,
                                                                 rclpy_context):
    """``replay --wait`` asks this before its first bag; the answer must not
    depend on whether the mapper's latched topic arrived yet."""
    from stseg_ros.ros.replay import Replayer, SpinThread

    replayer = Replayer(clock=False)
    spin = SpinThread(replayer)
    try:
        assert replayer.mapped_epochs(timeout=60.0) == 1
    finally:
        spin.stop()
        replayer.destroy_node()


def test_a_restarted_mapper_publishes_its_map_as_detections(mapper_on_a_stored_map,
                                                            rclpy_context):
    """~/detections comes from the mapper as from the map_server: the stored
    map's present objects, latched for a planner that subscribes later."""
    from vision_msgs.msg import Detection3DArray

    from stseg_ros.ros.qos import MAP_STATE_QOS

    received: list[Detection3DArray] = []
    node = rclpy_context.create_node("detections_listener")
    try:
        node.create_subscription(Detection3DArray, "/mapper/detections",
                                 received.append, MAP_STATE_QOS)
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            rclpy_context.spin_once(node, timeout_sec=0.1)
    finally:
        node.destroy_node()
    assert received, mapper_on_a_stored_map[1].read_text()
    (chair,) = received[-1].detections
    assert received[-1].header.frame_id == "map"
    assert chair.id == "1" and chair.results[0].hypothesis.class_id == "chair"
    assert chair.results[0].hypothesis.score == pytest.approx(0.9)
    assert chair.bbox.center.position.x == pytest.approx(1.0)
    assert (chair.bbox.size.x, chair.bbox.size.z) == pytest.approx((0.5, 0.9))


def test_a_node_asked_where_it_is_prints_its_stacks_and_runs_on(mapper_on_a_stored_map):
    """What ``stop_process`` does before it SIGKILLs a node that did not stop:
    the log then says where every thread was (the fixture's stop asserts the
    node still exits cleanly afterwards)."""
    proc, log = mapper_on_a_stored_map
    _wait_for_line(log, "object memory", proc)
    proc.send_signal(signal.SIGUSR1)
    _wait_for_line(log, "Current thread", proc)
    _wait_for_line(log, "in _work", proc)           # the mapper's worker, waiting
    assert proc.poll() is None


def test_replay_notices_an_accumulator_that_died(tmp_path, rclpy_context):
    from stseg_ros.ros.replay import PeerLostError, Replayer, SpinThread

    log = tmp_path / "accumulator.log"
    proc = start_node("accumulator", env=localhost_ros_env(), log=log)
    replayer = Replayer(clock=False)
    spin = SpinThread(replayer)
    try:
        replayer.wait_for_accumulator(timeout=60.0)
        assert replayer.begin_revisit("doomed").success
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        start = time.monotonic()
        with pytest.raises(PeerLostError, match="end_revisit"):
            replayer.end_revisit({"color": 10, "depth": 10})
        assert time.monotonic() - start < 60.0      # not the 140 s an answer may take
    finally:
        spin.stop()
        replayer.destroy_node()
        stop_process(proc)
