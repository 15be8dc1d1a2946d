"""Publishing side of a map node: instances, standard detections, markers and
change events of an epoch, and the object query service over the latest
published state."""

from __future__ import annotations

from rclpy.node import Node
from std_msgs.msg import Header
from vision_msgs.msg import Detection3DArray
from visualization_msgs.msg import MarkerArray

from stseg_ros.core.query import filter_objects
from stseg_ros.core.snapshot import EpochState
from stseg_ros.msg import ChangeEventArray, ObjectInstanceArray
from stseg_ros.ros.conversions import (
    change_to_msg,
    detections_to_msg,
    object_to_msg,
    query_from_request,
)
from stseg_ros.ros.markers import object_markers
from stseg_ros.ros.qos import CHANGE_EVENTS_QOS, MAP_STATE_QOS
from stseg_ros.srv import QueryObjects


class MapPublisher:
    """Publishes ``~/instances``, ``~/detections`` (the present objects as
    ``vision_msgs/Detection3DArray``, for planners), ``~/markers`` and
    ``~/changes`` for a node and serves ``~/query_objects``."""

    def __init__(self, node: Node, map_frame: str) -> None:
        self._node = node
        self._map_frame = map_frame
        self._state: EpochState | None = None
        self._instances = node.create_publisher(ObjectInstanceArray, "~/instances", MAP_STATE_QOS)
        self._detections = node.create_publisher(
            Detection3DArray, "~/detections", MAP_STATE_QOS)
        self._markers = node.create_publisher(MarkerArray, "~/markers", MAP_STATE_QOS)
        self._changes = node.create_publisher(ChangeEventArray, "~/changes", CHANGE_EVENTS_QOS)
        self._query = node.create_service(QueryObjects, "~/query_objects", self._on_query)

    def publish(self, state: EpochState) -> None:
        """Publish one epoch's objects and changes; queries answer from it afterwards."""
        header = Header(frame_id=self._map_frame, stamp=self._node.get_clock().now().to_msg())
        self._state = state
        self._instances.publish(ObjectInstanceArray(
            header=header, epoch=state.epoch,
            instances=[object_to_msg(o) for o in state.objects]))
        self._detections.publish(detections_to_msg(state.objects, header))
        self._markers.publish(object_markers(state.objects, header, state.changes))
        self._changes.publish(ChangeEventArray(
            header=header, epoch=state.epoch,
            events=[change_to_msg(c) for c in state.changes]))

    def _on_query(self, request, response):
        if self._state is None:
            response.success = False
            response.message = "no epoch has been mapped yet"
            return response
        try:
            query = query_from_request(request)
        except ValueError as err:
            response.success = False
            response.message = f"bad query: {err}"
            return response
        found = filter_objects(self._state.objects, query)
        response.success = True
        response.epoch = self._state.epoch
        response.instances = [object_to_msg(o) for o in found]
        response.message = f"{len(found)} object(s) at epoch {self._state.epoch}"
        return response
