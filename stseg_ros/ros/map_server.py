"""map_server node: publishes a stored map history (a snapshot file) epoch by
epoch on the same topics as the mapper, and answers object queries.

Use it to inspect a saved map in RViz, or to feed a task planner recorded
object states without running the mapping pipeline.
"""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from stseg_ros.core.fields import SettingError
from stseg_ros.core.records import ObjectState
from stseg_ros.core.snapshot import SnapshotError, example_snapshot, load_snapshot
from stseg_ros.ros.map_publisher import MapPublisher
from stseg_ros.ros.params import declare_sections, read_sections
from stseg_ros.ros.settings import MAP_SERVER, MapServerConfig


class MapServer(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("map_server", **kwargs)
        declare_sections(self, MAP_SERVER)
        cfg = read_sections(self, MAP_SERVER)[MapServerConfig]   # SettingError: main says why
        snapshot_path, frame, period = cfg.snapshot, cfg.map_frame, cfg.epoch_period
        self._loop = cfg.loop

        # Bad files raise here, before any publisher exists: the node exits with
        # the reason instead of publishing an empty map.
        self._snapshot = load_snapshot(snapshot_path) if snapshot_path else example_snapshot()
        self._publisher = MapPublisher(self, frame or self._snapshot.map_frame)
        epochs = self._snapshot.epochs
        self.get_logger().info(
            f"publishing {len(epochs)} epoch(s) from {snapshot_path or 'the example snapshot'}")
        if period <= 0.0:
            self._next = len(epochs) - 1
            self._step()
        else:
            self._next = 0
            self._step()
            self._timer = self.create_timer(period, self._step)

    def _step(self) -> None:
        epochs = self._snapshot.epochs
        if self._next >= len(epochs):
            if not self._loop:
                return
            self._next = 0
        state = epochs[self._next]
        self._publisher.publish(state)
        present = sum(1 for o in state.objects if o.state == ObjectState.PRESENT)
        self.get_logger().info(
            f"epoch {state.epoch} ({state.label or 'unlabelled'}): {present} present object(s), "
            f"{len(state.changes)} change(s)")
        self._next += 1


def ros_arguments(epoch_period: float = 1.0, snapshot: str = "", loop: bool = False) -> list[str]:
    """``--ros-args`` setting this node's parameters (an empty snapshot is left
    out: rcl cannot parse an empty parameter value)."""
    args = ["--ros-args", "-p", f"epoch_period:={float(epoch_period)}",
            "-p", f"loop:={str(bool(loop)).lower()}"]
    if snapshot:
        args += ["-p", f"snapshot:={snapshot}"]
    return args


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    try:
        node = MapServer()
    except (SnapshotError, SettingError) as err:
        print(f"map_server: {err}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
