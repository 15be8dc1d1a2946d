"""Client side of a map node (mapper or map_server): follows its instances and
change events and calls its object query, for the CLI, the demo and tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import rclpy
from geometry_msgs.msg import Point
from rclpy.node import Node

from stseg_ros.core.records import ChangeRecord, ObjectRecord, ObjectState
from stseg_ros.msg import ChangeEventArray, ObjectInstanceArray
from stseg_ros.ros.conversions import change_from_msg, object_from_msg
from stseg_ros.ros.qos import CHANGE_EVENTS_QOS, MAP_STATE_QOS
from stseg_ros.srv import QueryObjects


class MapClient(Node):
    """Collects the epochs a map node publishes, keyed by epoch index."""

    def __init__(self, target: str = "/map_server", name: str = "stseg_map_client",
                 on_instances: Callable[[int, list[ObjectRecord]], None] | None = None,
                 on_changes: Callable[[int, list[ChangeRecord]], None] | None = None) -> None:
        super().__init__(name)
        target = target.rstrip("/")
        self.instances: dict[int, list[ObjectRecord]] = {}
        self.changes: dict[int, list[ChangeRecord]] = {}
        self.map_frame = ""
        self._on_instances = on_instances
        self._on_changes = on_changes
        self.create_subscription(ObjectInstanceArray, f"{target}/instances",
                                 self._instances_cb, MAP_STATE_QOS)
        self.create_subscription(ChangeEventArray, f"{target}/changes",
                                 self._changes_cb, CHANGE_EVENTS_QOS)
        self._query = self.create_client(QueryObjects, f"{target}/query_objects")

    def _instances_cb(self, msg: ObjectInstanceArray) -> None:
        records = [object_from_msg(m) for m in msg.instances]
        self.map_frame = msg.header.frame_id
        self.instances[msg.epoch] = records
        if self._on_instances:
            self._on_instances(msg.epoch, records)

    def _changes_cb(self, msg: ChangeEventArray) -> None:
        records = [change_from_msg(m) for m in msg.events]
        self.changes[msg.epoch] = records
        if self._on_changes:
            self._on_changes(msg.epoch, records)

    def spin_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """Process callbacks until ``done()`` holds or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while not done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            rclpy.spin_once(self, timeout_sec=min(0.1, remaining))
        return True

    def query(self, class_ids=(), class_names=(), ids=(), states=(), region=None,
              timeout: float = 10.0) -> QueryObjects.Response:
        """Call the query service; raises TimeoutError if it does not answer."""
        if not self._query.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {self._query.srv_name} is not available")
        request = QueryObjects.Request(
            class_ids=[int(c) for c in class_ids], class_names=list(class_names),
            ids=[int(i) for i in ids], states=bytes(int(ObjectState(s)) for s in states))
        if region is not None:
            (x0, y0, z0), (x1, y1, z1) = region
            request.use_region = True
            request.region_min = Point(x=float(x0), y=float(y0), z=float(z0))
            request.region_max = Point(x=float(x1), y=float(y1), z=float(z1))
        future = self._query.call_async(request)
        rclpy.spin_until_future_complete(self, future, timeout_sec=timeout)
        if not future.done():
            raise TimeoutError(f"service {self._query.srv_name} did not answer in {timeout} s")
        return future.result()
