"""accumulator node: fuses the RGB-D stream into revisits and hands each
finished revisit to the mapper on ``revisits``.

Subscribes to colour, depth and camera_info (approximate-time paired), takes
the camera pose from /tf + /tf_static (or from an odometry topic), and serves
``~/begin_revisit`` and ``~/end_revisit``. No callback blocks: they pair and
queue, decoding and fusion run on the ``RevisitAccumulator``'s worker thread,
and ``end_revisit`` awaits the worker.
"""

from __future__ import annotations

import sys
import time

from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.event_handler import SubscriptionEventCallbacks
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage

from stseg_ros.ingest.accumulator import (
    AccumulatorConfig,
    RawFrame,
    RevisitAccumulator,
    RevisitResult,
)
from stseg_ros.ingest.sync import ApproximateTimeSync
from stseg_ros.ingest.tf_buffer import TfBuffer
from stseg_ros.mapping.drift import DriftConfig
from stseg_ros.mapping.frames import stamp_ns
from stseg_ros.mapping.fusion import FusionConfig
from stseg_ros.mapping.labels import LabelConfig
from stseg_ros.msg import RevisitScan
from stseg_ros.ros.conversions import scan_to_msg
from stseg_ros.ros.executor import next_spin, spin_nodes
from stseg_ros.ros.lifecycle import ManagedNode
from stseg_ros.ros.log_bridge import forward_logs
from stseg_ros.ros.params import declare_sections, read_sections
from stseg_ros.ros.qos import REVISIT_QOS
from stseg_ros.ros.settings import ACCUMULATOR, CameraInputConfig
from stseg_ros.sources.base import SourceConfig
from stseg_ros.srv import BeginRevisit, EndRevisit

RETIRE_AFTER_S = 2.0     # an answered end_revisit's service outlives deactivation this long


class AccumulatorNode(ManagedNode):
    """A managed node (``stseg_ros.ros.lifecycle``). Configured: parameters
    read, the fusion worker running, ``revisits`` advertised. Active: the
    camera, pose subscriptions, the services and the timers exist. Deactivated
    with a revisit open, the revisit stays open (frames already queued are
    still fused) and carries on when the node is activated again; an
    ``end_revisit`` call in flight is answered before its service goes."""

    def __init__(self, **kwargs) -> None:
        super().__init__("accumulator", **kwargs)
        forward_logs(self, "stseg_ros.ingest", "stseg_ros.mapping.fusion")
        self.accumulator: RevisitAccumulator | None = None
        self._ends_in_flight = 0
        self._revisit_services: list = []
        self._retire_services = False
        self.start()

    def declare(self) -> None:
        declare_sections(self, ACCUMULATOR)

    def configure(self) -> None:
        configs = read_sections(self, ACCUMULATOR)
        cfg, fusion, drift = (configs[AccumulatorConfig], configs[FusionConfig],
                              configs[DriftConfig])
        inputs: CameraInputConfig = configs[CameraInputConfig]
        self.pose_source = inputs.pose_source
        self._reliable = inputs.reliable_images
        self._transports = {"color": inputs.color_transport, "depth": inputs.depth_transport}
        self._image_depth = inputs.image_queue_depth
        self.arrival_timeout_s = inputs.arrival_timeout_s
        self._status_period = inputs.status_period_s
        slop = configs[SourceConfig].max_pair_gap_s
        labels: LabelConfig = configs[LabelConfig]
        self._label_topic = labels.topic

        self.tf = TfBuffer(jump_back_s=cfg.jump_back_s)
        # as many images wait for a partner as the subscriptions hold: under load
        # one topic's images can arrive that far ahead of the other's
        self.sync = ApproximateTimeSync(int(slop * 1e9), queue_size=self._image_depth)
        self._camera_info: CameraInfo | None = None
        # not a lifecycle publisher: a revisit closed just before deactivation
        # still reaches the mapper
        self._scan_pub = self.create_publisher(RevisitScan, "revisits", REVISIT_QOS)
        self.accumulator = RevisitAccumulator(self.tf, self._publish_revisit, cfg, fusion, drift,
                                              waiting_images=self.sync.flush, labels=labels)
        self.get_logger().info(
            f"fusing colour + depth in '{cfg.odom_frame}' with poses from "
            f"{'/tf' if self.pose_source == 'tf' else 'odometry'}; revisits go to "
            f"{self._scan_pub.topic_name}")

    def activate(self) -> None:
        self.accumulator.resume()           # time spent inactive is not idle time
        inputs = MutuallyExclusiveCallbackGroup()
        image_qos = QoSProfile(
            depth=self._image_depth, history=HistoryPolicy.KEEP_LAST,
            reliability=ReliabilityPolicy.RELIABLE if self._reliable
            else ReliabilityPolicy.BEST_EFFORT)
        for kind, transport in self._transports.items():  # raw, or image_transport's plugins
            topic = f"camera/{kind}/image_raw" + ("" if transport == "raw" else f"/{transport}")
            lost = SubscriptionEventCallbacks(
                message_lost=lambda info: self.accumulator.lost(info.total_count_change))
            self.create_subscription(Image if transport == "raw" else CompressedImage, topic,
                                     lambda m, k=kind: self._image(k, m), image_qos,
                                     callback_group=inputs, event_callbacks=lost)
        self.create_subscription(CameraInfo, "camera/color/camera_info", self._info, image_qos,
                                 callback_group=inputs)
        if self._label_topic:               # the robot's 2D segmenter, stamped as its colour
            self.create_subscription(
                Image, self._label_topic,
                lambda m: self.accumulator.submit_labels(stamp_ns(m.header), m), image_qos,
                callback_group=inputs)
        poses = MutuallyExclusiveCallbackGroup()   # not stuck behind image callbacks
        tf_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        static_qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL)
        if self.pose_source == "tf":
            self.create_subscription(TFMessage, "/tf", lambda m: self._tf(m, False), tf_qos,
                                     callback_group=poses)
        else:
            self.create_subscription(Odometry, "odom", self._odometry, tf_qos,
                                     callback_group=poses)
        self.create_subscription(TFMessage, "/tf_static", lambda m: self._tf(m, True),
                                 static_qos, callback_group=poses)

        control = MutuallyExclusiveCallbackGroup()
        self._retire_services = False
        if not self._revisit_services:      # still there if an end_revisit outlived deactivate
            self._revisit_services = [
                self.create_service(BeginRevisit, "~/begin_revisit", self._begin,
                                    callback_group=control),
                self.create_service(EndRevisit, "~/end_revisit", self._end,
                                    callback_group=control)]
        self.create_timer(0.5, self.accumulator.close_if_idle, callback_group=control)
        if self._status_period > 0:
            self.create_timer(self._status_period, self._status, callback_group=control)

    def deactivate(self) -> None:
        """Inputs, timers and services go; an open revisit stays open. The
        services of an ``end_revisit`` still waiting go once it is answered."""
        services = {id(s) for s in self._revisit_services}
        self._destroy([e for e in self._activated if id(e[1]) not in services])
        self._activated = [e for e in self._activated if id(e[1]) in services]
        if self._ends_in_flight:
            self._retire_services = True
        else:
            self._drop_services()

    def _retire(self, timer) -> None:
        self.destroy_timer(timer)
        if self._retire_services and not self._ends_in_flight:   # not activated again since
            self._drop_services()

    def _drop_services(self) -> None:
        self._retire_services = False
        self._destroy(self._activated)
        self._activated, self._revisit_services = [], []

    def release(self) -> None:
        if self.accumulator is not None:
            self.accumulator.shutdown()
            self.accumulator = None
        super().release()

    # --- inputs (message thread: pair and queue only) ---------------------------------

    def _image(self, kind: str, msg: Image | CompressedImage) -> None:
        self.accumulator.arrived(kind)
        given_up = self.sync.unpaired
        pair = self.sync.add(kind, stamp_ns(msg.header), msg)
        self.accumulator.unpaired(self.sync.unpaired - given_up)
        if pair is not None:
            self.accumulator.submit(RawFrame(pair.stamp_ns, pair.color, pair.depth,
                                             self._camera_info, pair.color.header.frame_id))

    def _info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _tf(self, msg: TFMessage, static: bool) -> None:
        for t in msg.transforms:
            q, p = t.transform.rotation, t.transform.translation
            self._add_transform(t.header.frame_id, t.child_frame_id, stamp_ns(t.header),
                                (p.x, p.y, p.z), (q.x, q.y, q.z, q.w), static)

    def _odometry(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        self._add_transform(msg.header.frame_id, msg.child_frame_id, stamp_ns(msg.header),
                            (p.x, p.y, p.z), (q.x, q.y, q.z, q.w), False)

    def _add_transform(self, parent, child, stamp, translation, rotation, static) -> None:
        try:
            self.tf.add(parent, child, stamp, translation, rotation, static)
        except ValueError as err:
            self.get_logger().warning(f"ignoring transform: {err}",
                                      throttle_duration_sec=5.0)

    # --- revisits ---------------------------------------------------------------------

    def _publish_revisit(self, result) -> None:
        header = Header(frame_id=self.accumulator.cfg.odom_frame)
        header.stamp.sec, header.stamp.nanosec = divmod(result.last_stamp_ns, 1_000_000_000)
        self._scan_pub.publish(scan_to_msg(result, header))
        self.get_logger().info(
            f"revisit {result.revisit} handed to the mapper: {len(result.scan.xyz)} points, "
            f"{result.scan.parts} fragments")

    def _begin(self, request, response):
        index = self.accumulator.begin(request.label)     # never waits
        response.success, response.revisit = True, index
        response.message = f"revisit {index} opened"
        return response

    async def _end(self, request, response):
        self._ends_in_flight += 1
        try:
            return await self._end_revisit(request, response)
        finally:
            self._ends_in_flight -= 1
            if self._retire_services and not self._ends_in_flight:
                # deactivated meanwhile: the services go once this answer is sent;
                # the middleware sends it from its own thread (asynchronous
                # publication), so the service stays a moment longer than the call
                timer = []
                timer.append(self.create_timer(RETIRE_AFTER_S, lambda: self._retire(timer[0])))

    async def _end_revisit(self, request, response):
        # Awaited, not blocking: images keep flowing while the backlog is fused.
        sent = {"color": request.color_sent, "depth": request.depth_sent}
        missing = await self._arrival(sent, request.arrival_timeout_s or self.arrival_timeout_s)
        result = await self._closed(request.discard, missing)
        if result is None:
            response.success, response.message = False, "no revisit is open"
            return response
        got = result.arrivals
        response.success, response.revisit = True, result.revisit
        response.frames_fused, response.frames_dropped = result.fused, result.dropped
        response.frames_overflow = result.overflow
        response.frames_thinned = result.thinned
        response.frames_received, response.frames_late = result.frames, got.late
        response.color_received, response.depth_received = got.color, got.depth
        response.images_unpaired, response.images_lost = got.unpaired, got.lost
        response.images_missing = got.missing
        if result.labels is not None:
            response.frames_labelled = result.labels.labelled
            response.frames_unlabelled = result.labels.unlabelled
            response.label_images_unused = result.labels.unmatched + sum(
                result.labels.refused.values())
            response.label_images_thinned = result.labels.not_fused
        done = "discarded" if request.discard else "closed"
        response.message = (f"revisit {result.revisit} {done}: {result.fused} frames fused, "
                            f"{result.dropped} dropped")
        if result.labels is not None:
            response.message += f"; {result.labels.note()}"
        if got.missing:
            response.message += f"; {got.missing} image(s) sent never arrived"
        return response

    async def _arrival(self, sent: dict[str, int], timeout_s: float) -> int:
        """Yield to the executor until the open revisit has received the images
        the caller sent, or ``timeout_s`` passed; the number still missing. A
        timer of its own brings the executor back while no image comes (this
        service holds its callback group, and with it the node's other timers)."""
        if not any(sent.values()):
            return 0
        deadline = time.monotonic() + timeout_s
        accumulator = self.accumulator
        tick = self.create_timer(0.1, lambda: None,
                                 callback_group=MutuallyExclusiveCallbackGroup())
        try:
            while True:
                if self.accumulator is not accumulator:     # cleaned up meanwhile
                    return 0
                received = accumulator.received()
                if received is None:
                    return 0
                missing = sum(max(0, n - received[k]) for k, n in sent.items())
                if missing == 0 or time.monotonic() > deadline:
                    if missing:
                        self.get_logger().warning(
                            f"{missing} image(s) sent for this revisit had not arrived after "
                            f"{timeout_s:.0f} s (received {received}, sent {sent}); closing it")
                    return missing
                await next_spin()
        finally:
            self.destroy_timer(tick)

    async def _closed(self, discard: bool, missing: int = 0) -> RevisitResult | None:
        """Close the open revisit and yield to the executor until the worker has
        closed it (its wake-up brings the executor back); None if none was open
        (or the node was cleaned up before the worker closed it)."""
        accumulator = self.accumulator
        if accumulator is None:
            return None
        closing = accumulator.close(discard, self.executor.wake if self.executor else None,
                                    missing)
        if closing is None:
            return None
        while not closing.done.is_set():
            if self.accumulator is not accumulator:
                return None
            await next_spin()
        return closing.outcome()

    def _status(self) -> None:
        status = self.accumulator.status()
        if status is not None:
            index, fused, dropped = status
            self.get_logger().info(f"revisit {index}: {fused} frames fused, {dropped} dropped "
                                   f"so far")


def main() -> int:
    return spin_nodes(AccumulatorNode)


if __name__ == "__main__":
    sys.exit(main())
