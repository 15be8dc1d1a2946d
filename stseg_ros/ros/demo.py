"""`stseg demo`: the map node and a subscriber in separate processes on a real
ROS graph; prints each epoch's objects and changes as they arrive, then asks
the query service for the chairs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import rclpy

from stseg_ros.core.report import format_epoch_changes, format_epoch_objects
from stseg_ros.core.snapshot import example_snapshot
from stseg_ros.ros.env import localhost_ros_env
from stseg_ros.ros.map_client import MapClient
from stseg_ros.ros.map_server import ros_arguments


def start_map_server(epoch_period: float, snapshot: str = "",
                     env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start the map_server node as a child process."""
    cmd = [sys.executable, "-m", "stseg_ros.ros.map_server",
           *ros_arguments(epoch_period, snapshot)]
    return subprocess.Popen(cmd, env=env or localhost_ros_env())


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGINT (a clean rclpy shutdown), then SIGKILL if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def run_demo(timeout: float = 60.0) -> int:
    os.environ.update(localhost_ros_env())
    expected = len(example_snapshot().epochs)
    server = start_map_server(epoch_period=1.0)

    rclpy.init()
    client = MapClient(
        "/map_server", name="stseg_demo",
        on_instances=lambda e, objs: print(format_epoch_objects(e, objs), flush=True),
        on_changes=lambda e, chs: print(format_epoch_changes(e, chs), flush=True))
    try:
        print(f"map_server started (pid {server.pid}); waiting for {expected} epochs ...")
        ok = client.spin_until(
            lambda: len(client.instances) >= expected and len(client.changes) >= expected
            or server.poll() is not None, timeout)
        if not ok or len(client.instances) < expected:
            print(f"demo: received {len(client.instances)} of {expected} epochs "
                  f"(map_server exit code {server.poll()})", file=sys.stderr)
            return 1
        answer = client.query(class_names=["chair"])
        print(f"\n=== query service: chairs ({answer.message}) ===")
        for inst in answer.instances:
            p = inst.pose.position
            print(f"  chair #{inst.id}: ({p.x:.2f}, {p.y:.2f}, {p.z:.2f}) "
                  f"state={inst.state} last seen in epoch {inst.epoch_last_seen}")
        return 0 if answer.success else 1
    finally:
        client.destroy_node()
        rclpy.try_shutdown()
        stop_process(server)
