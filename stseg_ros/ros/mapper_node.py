"""mapper node: maps each finished revisit and publishes the map's state.

Receives revisits from the accumulator on ``revisits``; a worker thread
registers each one to the map, undoes drift, segments it against the stored
epochs, gives objects persistent ids, detects changes and commits the epoch to
the SQLite object memory (``Mapper.process``). Then it publishes
``~/instances``, ``~/markers``, ``~/changes`` (transient-local: late
subscribers get the current map) and ``~/segmented_cloud``, and answers
``~/query_objects``. On start it reloads the memory and publishes its latest
state, so ids carry on across restarts.
"""

from __future__ import annotations

import queue
import sqlite3
import sys
import threading
from pathlib import Path

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from stseg_ros.core.colors import identity_color
from stseg_ros.core.snapshot import EpochState
from stseg_ros.mapping.config import SegmentationConfig
from stseg_ros.mapping.frames import stamp_ns
from stseg_ros.mapping.gravity import LevellingConfig
from stseg_ros.mapping.pipeline import Mapper
from stseg_ros.mapping.segmenter import default_segmenter, make_segmenter
from stseg_ros.memory import MemoryFileError, ObjectMemory
from stseg_ros.msg import RevisitScan
from stseg_ros.ros.conversions import scan_from_msg
from stseg_ros.ros.executor import NodeFailedError, spin_nodes
from stseg_ros.ros.log_bridge import forward_logs
from stseg_ros.ros.map_publisher import MapPublisher
from stseg_ros.ros.params import declare_config
from stseg_ros.ros.pointcloud2 import pack_rgb, to_cloud
from stseg_ros.ros.qos import MAP_STATE_QOS, REVISIT_QOS

DEFAULT_DB = "~/.ros/stseg_ros/memory.db"
LEVELLING = {
    "up": "Up axis of the revisits' odom frame: auto (the floor normal nearest the cameras' "
          "image-down direction), none (as it is), or x, y, z, -x, -y, -z",
    "tolerance_deg": "A revisit whose up is this close to +z is mapped as it is",
    "snap_deg": "The floor normal taken must lie this close to the cue (cameras or axis)",
    "voxel": "Resolution of the normal statistics (m)",
    "normal_radius": "Radius of the normal estimation (m)",
}


def epoch_state(memory: ObjectMemory, epoch: int) -> EpochState:
    """Every known object (with its state) after ``epoch``, and that epoch's changes."""
    entry = next(e for e in memory.epochs() if e.index == epoch)
    return EpochState(epoch, entry.label, memory.objects(), memory.changes(epoch))


def identity_rgb(instance_id: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Points of objects in their identity colour; the rest in dimmed sensor colour."""
    out = (rgb.astype(np.float32) * 0.5).astype(np.uint8)
    for oid in np.unique(instance_id[instance_id > 0]):
        out[instance_id == oid] = np.round(np.array(identity_color(int(oid))) * 255)
    return out


class MapperNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("mapper", **kwargs)
        forward_logs(self, "stseg_ros.mapping", "stseg_ros.memory")
        db = self.declare_parameter(
            "db_path", DEFAULT_DB, ParameterDescriptor(
                description="SQLite object memory; created if missing, reloaded if "
                            "present")).value
        segmenter = self.declare_parameter(
            "segmenter", default_segmenter(), ParameterDescriptor(
                description="Segmenter of each revisit (stseg run --segmenter): learned "
                            "(default where its weights are installed), learned-per-epoch "
                            "or geometric")).value
        self.device = self.declare_parameter(
            "device", "cpu", ParameterDescriptor(
                description="Device of learned segmenters: cpu or cuda")).value
        backend = self.declare_parameter(
            "sparse_backend", "torch", ParameterDescriptor(
                description="Sparse convolution of learned segmenters: torch or "
                            "minkowski (needs MinkowskiEngine)")).value
        weights = self.declare_parameter(
            "weights", "", ParameterDescriptor(
                description="Weights of learned segmenters; empty: the shipped ones")).value
        seg_defaults = SegmentationConfig()
        structure = self.declare_parameter(
            "structure", seg_defaults.structure, ParameterDescriptor(
                description="Walls, floors and object bounds of learned segmenters: "
                            "network or geometric (better on real scans)")).value
        classes = self.declare_parameter(
            "classes", seg_defaults.classes, ParameterDescriptor(
                description="Object classes of learned segmenters: network or "
                            "classifier (the geometric segmenter's cluster classifier)")).value
        self.map_frame = self.declare_parameter(
            "map_frame", "map", ParameterDescriptor(
                description="Frame of everything published (REP 105 map)")).value
        self.publish_cloud = bool(self.declare_parameter(
            "publish_cloud", True, ParameterDescriptor(
                description="Publish ~/segmented_cloud after each revisit")).value)
        self.levelling = declare_config(self, LevellingConfig, LEVELLING, prefix="levelling.")
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        self.db_path = Path(db).expanduser()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._segmenter = make_segmenter(segmenter, self.device, backend,
                                         weights or None, structure, classes)
        self.memory: ObjectMemory | None = None
        self.failure: str | None = None     # why the worker stopped, if it did
        self._failed = self.create_guard_condition(self._raise_failure)
        self.publisher = MapPublisher(self, self.map_frame)
        self._cloud_pub = self.create_publisher(PointCloud2, "~/segmented_cloud", MAP_STATE_QOS)
        # A foreign, corrupt or newer database raises here, untouched. A restart
        # publishes where the map stands before anything else can ask. SQLite
        # connections belong to one thread: the worker opens its own.
        with ObjectMemory(self.db_path) as memory:
            indices = memory.epoch_indices()
            epochs, objects = len(indices), len(memory.objects())
            if indices:
                self._publish(memory, indices[-1])
        self._queue: queue.Queue = queue.Queue()
        self.create_subscription(RevisitScan, "revisits", self._queue.put, REVISIT_QOS)
        self.mapped = 0
        self._worker = threading.Thread(target=self._work, name="mapper", daemon=True)
        self._worker.start()
        self.get_logger().info(f"object memory {self.db_path}: {epochs} epoch(s), {objects} "
                               f"object(s); segmenter {self._segmenter.name}")

    def _work(self) -> None:
        """Map revisits as they come. One bad revisit is logged and skipped; a
        memory that can no longer be read or written stops the node with the
        reason (``spin_nodes`` exits non-zero), rather than leaving it running
        and mapping nothing."""
        try:
            self.memory = ObjectMemory(self.db_path)
            self.mapper = Mapper(self.memory, self._segmenter, levelling=self.levelling)
            while True:
                msg = self._queue.get()
                if msg is None:
                    return
                try:
                    self._map(msg)
                except (sqlite3.Error, MemoryFileError):
                    raise
                except Exception as err:    # noqa: BLE001 - one bad revisit never stops mapping
                    self.get_logger().error(f"revisit {msg.revisit} ({msg.label}) not mapped: "
                                            f"{err}")
        except Exception as err:            # noqa: BLE001 - reported, then the node stops
            self.failure = f"mapper stopped: object memory {self.db_path}: {err}"
            self.get_logger().fatal(self.failure)
            self._failed.trigger()          # the executor thread raises it: the process exits
        finally:
            if self.memory is not None:
                try:
                    self.memory.close()
                except sqlite3.Error:       # a damaged file: already reported above
                    pass

    def _raise_failure(self) -> None:
        raise NodeFailedError(self.failure)

    def _map(self, msg: RevisitScan) -> None:
        stamp = stamp_ns(msg.header)
        if any(e.stamp_ns == stamp and e.label == msg.label for e in self.memory.epochs()):
            self.get_logger().info(f"revisit {msg.revisit} ({msg.label}) is already in the "
                                   "memory; not mapped again")
            return
        try:
            scan = scan_from_msg(msg)
        except (ValueError, KeyError) as err:
            self.get_logger().error(f"revisit {msg.revisit}: unreadable scan ({err}); skipped")
            return
        if len(scan.xyz) == 0:
            self.get_logger().warning(f"revisit {msg.revisit}: empty scan "
                                      f"({msg.frames_fused} frames fused); skipped")
            return
        self.get_logger().info(f"mapping revisit {msg.revisit} ({msg.label or 'unlabelled'}): "
                               f"{len(scan.xyz)} points, {scan.parts} fragments, "
                               f"{msg.frames_fused} frames fused, {msg.frames_dropped} dropped")
        outcome = self.mapper.process(scan, msg.label, stamp)
        self.get_logger().info(f"epoch {outcome.epoch}: {outcome.levelling}")
        times = ", ".join(f"{k} {v:.1f} s" for k, v in outcome.timings.items())
        self.mapped += 1
        if not outcome.registered:
            self.get_logger().warning(f"epoch {outcome.epoch}: NOT registered "
                                      f"({outcome.reason}); map unchanged ({times})")
            self._publish(self.memory, outcome.epoch)    # the same objects, one epoch on
            return
        kinds = [c.kind.name.lower() for c in outcome.changes]
        summary = ", ".join(f"{kinds.count(k)} {k}" for k in sorted(set(kinds))) or "no changes"
        self.get_logger().info(f"epoch {outcome.epoch}: {outcome.reason}; "
                               f"{len(outcome.objects)} objects, {summary} ({times})")
        self._publish(self.memory, outcome.epoch)

    def _publish(self, memory: ObjectMemory, epoch: int) -> None:
        self.publisher.publish(epoch_state(memory, epoch))
        registered = any(e.index == epoch and e.registered for e in memory.epochs())
        points = memory.points(epoch) if registered else None   # else not in the map frame
        if self.publish_cloud and points is not None:
            header = Header(frame_id=self.map_frame, stamp=self.get_clock().now().to_msg())
            n = len(points.xyz)
            self._cloud_pub.publish(to_cloud(
                header, x=points.xyz[:, 0], y=points.xyz[:, 1], z=points.xyz[:, 2],
                rgb=pack_rgb(identity_rgb(points.instance_id, points.rgb)),
                instance_id=points.instance_id.astype(np.uint32),
                class_id=points.class_id.astype(np.uint32),
                epoch=np.full(n, epoch, np.uint32)))

    def destroy_node(self) -> None:
        self._queue.put(None)
        self._worker.join(timeout=60.0)
        super().destroy_node()


def main() -> int:
    return spin_nodes(MapperNode)


if __name__ == "__main__":
    sys.exit(main())
