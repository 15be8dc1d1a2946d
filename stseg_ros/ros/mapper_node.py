"""mapper node: maps each finished revisit and publishes the map's state.

Receives revisits from the accumulator on ``revisits``; a worker thread
registers each one to the map, undoes drift, segments it against the stored
epochs, gives objects persistent ids, detects changes and commits the epoch to
the SQLite object memory (``Mapper.process``). Then it publishes
``~/instances``, ``~/detections`` (vision_msgs), ``~/markers``, ``~/changes``
(transient-local: late subscribers get the current map) and
``~/segmented_cloud``, and answers
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
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from stseg_ros.core.colors import identity_color
from stseg_ros.core.snapshot import EpochState
from stseg_ros.mapping.config import SegmentationConfig
from stseg_ros.mapping.frames import stamp_ns
from stseg_ros.mapping.labels import LabelSet
from stseg_ros.mapping.pipeline import Mapper
from stseg_ros.memory import MemoryFileError, ObjectMemory
from stseg_ros.msg import RevisitScan
from stseg_ros.ros.conversions import scan_from_msg
from stseg_ros.ros.executor import NodeFailedError, spin_nodes
from stseg_ros.ros.lifecycle import RELEASE_WAIT_S, ManagedNode
from stseg_ros.ros.log_bridge import forward_logs
from stseg_ros.ros.map_publisher import MapPublisher
from stseg_ros.ros.params import declare_sections, read_sections
from stseg_ros.ros.pointcloud2 import pack_rgb, to_cloud
from stseg_ros.ros.qos import MAP_STATE_QOS, REVISIT_QOS
from stseg_ros.ros.settings import MAPPER, MAPPER_STAGES, MapperNodeConfig


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


class MapperNode(ManagedNode):
    """A managed node (``stseg_ros.ros.lifecycle``). Configuring reads the
    parameters, builds the segmenter, opens the object memory, publishes where
    the map stands, serves ``~/query_objects`` and starts the worker; a bad
    parameter, missing weights or a foreign, corrupt or newer database fail the
    transition (the file untouched). Active: revisits are taken from
    ``revisits`` and mapped. Deactivating stops taking them: a revisit being
    mapped is finished and committed, revisits received but not started wait
    for the next activation. Cleaning up stops the worker and closes the
    memory (revisits still waiting are not mapped; the accumulator's
    transient-local topic offers its last few again on the next activation)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("mapper", **kwargs)
        forward_logs(self, "stseg_ros.mapping", "stseg_ros.memory")
        self.memory: ObjectMemory | None = None
        self.failure: str | None = None     # why the worker stopped, if it did
        self.mapped = 0
        self.taken = 0                      # revisits the worker took (mapped or not)
        self._worker: threading.Thread | None = None
        self._queue: queue.Queue = queue.Queue()
        self._active = threading.Event()    # the worker maps only while set
        self._stopping = False
        self.start()

    def declare(self) -> None:
        declare_sections(self, MAPPER)

    def configure(self) -> None:
        configs = read_sections(self, MAPPER)
        node, seg = configs[MapperNodeConfig], configs[SegmentationConfig]
        self.map_frame = node.map_frame
        self.publish_cloud = node.publish_cloud
        self.stages = {s.prefix.rstrip("."): configs[s.cls] for s in MAPPER_STAGES}
        self.db_path = Path(node.db_path).expanduser()
        # a label-set file that cannot be used fails here, as missing or unfitting
        # weights do below, before the memory is touched
        self.label_set = LabelSet.from_config(self.stages["labels"])
        # missing or unfitting weights raise here, before the memory is touched
        self._segmenter = seg.build()
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        # A foreign, corrupt or newer database raises here, untouched. A restart
        # publishes where the map stands before anything else can ask. SQLite
        # connections belong to one thread: the worker opens its own.
        with ObjectMemory(self.db_path) as memory:
            indices = memory.epoch_indices()
            epochs, objects = len(indices), len(memory.objects())
            self.publisher = MapPublisher(self, self.map_frame)
            self._cloud_pub = self.create_publisher(PointCloud2, "~/segmented_cloud",
                                                    MAP_STATE_QOS)
            if indices:
                self._publish(memory, indices[-1])
        self.failure = None
        self._failed = self.create_guard_condition(self._raise_failure)
        self._queue = queue.Queue()
        self._stopping = False
        self._worker = threading.Thread(target=self._work, name="mapper", daemon=True)
        self._worker.start()
        self.get_logger().info(f"object memory {self.db_path}: {epochs} epoch(s), {objects} "
                               f"object(s); segmenter {self._segmenter.name}")

    def activate(self) -> None:
        self.create_subscription(RevisitScan, "revisits", self._queue.put, REVISIT_QOS)
        self._active.set()

    def deactivate(self) -> None:
        self._active.clear()                # the revisit being mapped is finished
        super().deactivate()
        waiting = self._queue.qsize()
        if waiting:
            self.get_logger().info(f"{waiting} revisit(s) wait for the next activation")

    def release(self) -> None:
        if self._worker is not None:
            self._stopping = True
            self._queue.put(None)
            self._active.set()              # wake a worker waiting for activation
            self._worker.join(timeout=RELEASE_WAIT_S)
            self._active.clear()
            self._worker = None
            dropped = sum(1 for m in self._drain() if m is not None)
            if dropped:
                self.get_logger().warning(f"{dropped} revisit(s) received were not mapped "
                                          f"(cleaned up)")
        super().release()

    def _drain(self):
        while True:
            try:
                yield self._queue.get_nowait()
            except queue.Empty:
                return

    def _work(self) -> None:
        """Map revisits as they come, while active. One bad revisit is logged and
        skipped; a memory that can no longer be read or written stops the node
        with the reason (``spin_nodes`` exits non-zero), rather than leaving it
        running and mapping nothing."""
        try:
            self.memory = ObjectMemory(self.db_path)
            self.mapper = Mapper(self.memory, self._segmenter, **self.stages,
                                 label_set=self.label_set)
            while True:
                msg = self._queue.get()
                if msg is None:
                    return
                self._active.wait()         # inactive: the revisit waits
                if self._stopping:
                    self._queue.put(msg)    # counted by release
                    return
                self.taken += 1
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
                self.memory = None

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
        else:
            kinds = [c.kind.name.lower() for c in outcome.changes]
            summary = ", ".join(f"{kinds.count(k)} {k}"
                                for k in sorted(set(kinds))) or "no changes"
            self.get_logger().info(f"epoch {outcome.epoch}: {outcome.reason}; "
                                   f"{len(outcome.objects)} objects, {summary} ({times})")
        try:            # unregistered: the same objects, one epoch on
            self._publish(self.memory, outcome.epoch)
        except Exception as err:            # noqa: BLE001 - the epoch is stored either way
            if self.context.ok():
                self.get_logger().error(f"epoch {outcome.epoch} is stored, but publishing "
                                        f"it failed: {err}")
            else:       # stopped while it was mapped: mapping finished, publishing cannot
                self.get_logger().info(f"epoch {outcome.epoch} is stored; the node stopped "
                                       "before publishing it (a restart publishes it)")

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


def main() -> int:
    return spin_nodes(MapperNode)


if __name__ == "__main__":
    sys.exit(main())
