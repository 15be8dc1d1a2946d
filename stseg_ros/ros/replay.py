"""``stseg replay``: publish recorded rosbag2 bags (MCAP or sqlite3) into the
nodes with their original timing, and optionally record the mapper's outputs.

Messages are published as recorded (serialized CDR, no decoding), at the
bags' pace scaled by ``rate``, with ``/clock`` following the bag time for
nodes run with use_sim_time. Around each bag the accumulator's
``begin_revisit`` / ``end_revisit`` are called, so one bag is one revisit;
``end_revisit`` is told how many colour and depth images the bag held, so the
accumulator closes the revisit only once they arrived (or reports which did
not), and the report compares what was sent with what was received.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from stseg_ros.msg import ObjectInstanceArray
from stseg_ros.ros.qos import MAP_STATE_QOS
from stseg_ros.srv import BeginRevisit, EndRevisit, QueryObjects

CLOCK_TOPIC = "/clock"
END_DELAY_S = 0.5            # s between a bag's end and end_revisit, if its images are unknown
ARRIVAL_TIMEOUT_S = 20.0     # longest the accumulator waits for a bag's last images
GLOBAL_TOPICS = ("/tf", "/tf_static", CLOCK_TOPIC)    # not moved into a namespace
# the accumulator's image topics (raw or image_transport), by the kind of image
IMAGE_TOPICS = {"color": ("color/image_raw", "color/image_raw/compressed"),
                "depth": ("depth/image_raw", "depth/image_raw/compressedDepth")}


def accounting_gaps(sent: dict[str, int], answer: EndRevisit.Response) -> list[str]:
    """Where the accumulator's account of a revisit does not add up: each image
    sent must have been received or be reported missing, each image received
    be part of a frame or unpaired, and each frame be fused, dropped, thinned
    or late. Empty when every image is accounted for."""
    gaps = []
    received = {"color": answer.color_received, "depth": answer.depth_received}
    short = sum(max(0, n - received[k]) for k, n in sent.items())
    if short != answer.images_missing:
        gaps.append(f"{short} image(s) sent were not received, {answer.images_missing} "
                    "reported missing")
    if 2 * answer.frames_received + answer.images_unpaired != sum(received.values()):
        gaps.append(f"{sum(received.values())} images received, but {answer.frames_received} "
                    f"frames and {answer.images_unpaired} unpaired images")
    handled = (answer.frames_fused + answer.frames_dropped + answer.frames_thinned
               + answer.frames_late)
    if handled != answer.frames_received:
        gaps.append(f"{answer.frames_received} frames received, {handled} fused, dropped, "
                    "thinned or late")
    return gaps


class PeerLostError(TimeoutError):
    """A node the replay depends on went away while it was waited for."""


def image_kind(topic: str) -> str | None:
    """"color" or "depth" for the camera image topics the accumulator takes."""
    for kind, suffixes in IMAGE_TOPICS.items():
        if any(topic.endswith("/" + s) or topic == s for s in suffixes):
            return kind
    return None


def find_bags(paths: Iterable[Path]) -> list[Path]:
    """Bags to replay, in order: rosbag2 folders or files as given, and for a
    dataset (``stseg generate``) or one of its revisit folders, their bags."""
    out: list[Path] = []
    for path in map(Path, paths):
        if (path / "dataset.json").is_file():
            out += sorted(path.glob("scene_*/epoch_*/bag"))
        elif (path / "bag").is_dir():
            out.append(path / "bag")
        elif path.exists():
            out.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such bag or dataset")
    if not out:
        raise FileNotFoundError("no bags to replay")
    return out


def message_class(msgtype: str):
    """The rclpy class of a type name such as ``sensor_msgs/msg/Image``."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def revisit_label(bag: Path) -> str:
    """A dataset bag is named after its revisit folder, any other after itself."""
    return bag.parent.name if bag.name == "bag" else bag.stem


@dataclass
class BagReport:
    bag: Path
    messages: int = 0
    seconds: float = 0.0             # bag time covered
    wall_seconds: float = 0.0
    late_ms: float = 0.0             # worst lag behind the original timing
    revisit: int | None = None
    frames_fused: int = 0
    frames_dropped: int = 0
    frames_overflow: int = 0         # of the dropped: fusion fell behind
    frames_thinned: int = 0
    frames_received: int = 0         # colour/depth pairs the accumulator received
    frames_late: int = 0
    images_sent: dict[str, int] = field(default_factory=dict)      # kind -> published
    images_received: dict[str, int] = field(default_factory=dict)  # kind -> at the accumulator
    images_unpaired: int = 0
    images_lost: int = 0
    images_missing: int = 0          # sent, never received before the revisit closed
    frames_labelled: int = 0         # with the robot's label images (labels.topic)
    frames_unlabelled: int = 0
    label_images_unused: int = 0
    label_images_thinned: int = 0
    gaps: list[str] = field(default_factory=list)   # see accounting_gaps
    skipped_topics: list[str] = field(default_factory=list)

    def accounting(self) -> str:
        """One line on where every frame and image went."""
        sent = "/".join(str(self.images_sent.get(k, 0)) for k in IMAGE_TOPICS)
        got = "/".join(str(self.images_received.get(k, 0)) for k in IMAGE_TOPICS)
        return (f"images colour/depth sent {sent}, received {got} ({self.images_unpaired} "
                f"unpaired, {self.images_lost} lost, {self.images_missing} missing); "
                f"{self.frames_received} frames: {self.frames_fused} fused, "
                f"{self.frames_dropped} dropped, {self.frames_thinned} thinned, "
                f"{self.frames_late} late"
                + (f"; {self.frames_labelled} labelled, {self.frames_unlabelled} without "
                   f"their label image, label images: {self.label_images_thinned} of thinned "
                   f"frames, {self.label_images_unused} unused"
                   if self.frames_labelled or self.frames_unlabelled else ""))


class Replayer(Node):
    """Publishes bags and drives revisits; spun by its own executor thread."""

    def __init__(self, accumulator: str = "/accumulator", mapper: str = "/mapper",
                 namespace: str = "", clock: bool = True) -> None:
        super().__init__("stseg_replay")
        self.namespace = namespace.strip("/")
        self.clock = self.create_publisher(Clock, CLOCK_TOPIC, 10) if clock else None
        self._bag_publishers: dict[str, object] = {}
        self._begin = self.create_client(BeginRevisit, f"{accumulator}/begin_revisit")
        self._end = self.create_client(EndRevisit, f"{accumulator}/end_revisit")
        self._query = self.create_client(QueryObjects, f"{mapper}/query_objects")
        self.epoch_times: dict[int, float] = {}    # epoch -> when first published (monotonic)
        self.create_subscription(ObjectInstanceArray, f"{mapper}/instances",
                                 lambda m: self.epoch_times.setdefault(m.epoch, time.monotonic()),
                                 MAP_STATE_QOS)

    def _topic(self, topic: str) -> str:
        if topic in GLOBAL_TOPICS or not self.namespace:
            return topic
        return f"/{self.namespace}/{topic.lstrip('/')}"

    def publisher(self, topic: str, msgtype: str):
        """The publisher of a bag topic (created once; None if its type is not installed)."""
        if topic not in self._bag_publishers:
            try:
                cls = message_class(msgtype)
            except (ImportError, AttributeError, ValueError):
                self._bag_publishers[topic] = None
                self.get_logger().warning(f"{topic}: type {msgtype} is not installed; "
                                          "not replayed")
                return None
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
            if topic == "/tf_static":
                qos.durability = DurabilityPolicy.TRANSIENT_LOCAL
            self._bag_publishers[topic] = self.create_publisher(cls, self._topic(topic), qos)
        return self._bag_publishers[topic]

    def call(self, client, request, timeout: float = 30.0, was_ready: bool = False):
        """Call a service (the executor thread delivers the answer); raises
        ``PeerLostError`` as soon as the serving node is gone (for a node killed
        outright, once discovery notices: the middleware's lease, seconds),
        instead of waiting. ``was_ready``: the service answered before, so its
        absence now means its node went away."""
        if not client.wait_for_service(timeout_sec=5.0 if was_ready else timeout):
            if was_ready:
                raise PeerLostError(f"service {client.srv_name} is gone (its node stopped or was "
                               "killed)")
            raise TimeoutError(f"service {client.srv_name} is not available")
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        next_check, gone_since = time.monotonic() + 1.0, None
        while not future.done():
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"service {client.srv_name} did not answer in {timeout} s")
            if now > next_check:
                next_check = now + 1.0
                if client.service_is_ready():
                    gone_since = None
                elif gone_since is None:
                    gone_since = now
                elif now - gone_since > 2.0:
                    raise PeerLostError(f"service {client.srv_name} went away while it was "
                                   "serving this call (its node stopped or was killed)")
            time.sleep(0.01)
        return future.result()

    def play(self, bag: Path, rate: float = 1.0, revisit_calls: bool = True,
             progress: Callable[[str], None] = print) -> BagReport:
        from rosbags.highlevel import AnyReader

        report = BagReport(bag)
        if revisit_calls:
            report.revisit = self.begin_revisit(revisit_label(bag)).revisit
        with AnyReader([bag]) as reader:
            connections = []
            for conn in reader.connections:
                if self.publisher(conn.topic, conn.msgtype) is None:
                    report.skipped_topics.append(conn.topic)
                else:
                    connections.append(conn)
            kinds = {c.topic: image_kind(c.topic) for c in connections}
            counted = {k for k in IMAGE_TOPICS
                       if list(kinds.values()).count(k) == 1}   # one topic of that kind
            sent = dict.fromkeys(IMAGE_TOPICS, 0)
            start_wall, start_bag = time.monotonic(), None
            last_clock = -1
            for conn, stamp, raw in reader.messages(connections=connections):
                if start_bag is None:
                    start_bag = stamp
                due = start_wall + (stamp - start_bag) / 1e9 / rate
                lag = time.monotonic() - due
                if lag < 0:
                    time.sleep(-lag)
                report.late_ms = max(report.late_ms, lag * 1000.0)
                if self.clock is not None and stamp > last_clock:
                    sec, nsec = divmod(stamp, 1_000_000_000)
                    self.clock.publish(Clock(clock=Time(sec=sec, nanosec=nsec)))
                    last_clock = stamp
                self._bag_publishers[conn.topic].publish(bytes(raw))
                report.messages += 1
                if kinds[conn.topic] in counted:
                    sent[kinds[conn.topic]] += 1
            report.images_sent = {k: sent[k] for k in counted}
            report.seconds = (last_clock - start_bag) / 1e9 if start_bag is not None else 0.0
        report.wall_seconds = time.monotonic() - start_wall
        if revisit_calls:
            if len(report.images_sent) < len(IMAGE_TOPICS):
                time.sleep(END_DELAY_S)     # unknown counts: give the last frames time
            try:
                answer = self.end_revisit(report.images_sent)
            except PeerLostError as err:
                raise PeerLostError(f"{err}; revisit {report.revisit} ({revisit_label(bag)}) "
                                    "was lost with it: replay it again once the accumulator "
                                    "is back") from err
            self._account(report, answer)
            report.gaps = accounting_gaps(report.images_sent, answer)
        progress(f"{bag}: {report.messages} messages, {report.seconds:.1f} s of bag in "
                 f"{report.wall_seconds:.1f} s (worst lag {report.late_ms:.0f} ms)"
                 + (f"; revisit {report.revisit}: {report.frames_fused} frames fused, "
                    f"{report.frames_dropped} dropped"
                    + (f" ({report.frames_overflow} as fusion fell behind)"
                       if report.frames_overflow else "") if revisit_calls else ""))
        if revisit_calls:
            progress(f"  {report.accounting()}")
            if report.images_missing:
                progress(f"  warning: {report.images_missing} image(s) of {bag} never reached "
                         "the accumulator")
            for gap in report.gaps:
                progress(f"  warning: frame accounting does not add up: {gap}")
        return report

    @staticmethod
    def _account(report: BagReport, answer: EndRevisit.Response) -> None:
        report.frames_fused, report.frames_dropped = answer.frames_fused, answer.frames_dropped
        report.frames_overflow, report.frames_thinned = answer.frames_overflow, \
            answer.frames_thinned
        report.frames_received, report.frames_late = answer.frames_received, answer.frames_late
        report.images_received = {"color": answer.color_received, "depth": answer.depth_received}
        report.images_unpaired, report.images_lost = answer.images_unpaired, answer.images_lost
        report.images_missing = answer.images_missing
        report.frames_labelled = answer.frames_labelled
        report.frames_unlabelled = answer.frames_unlabelled
        report.label_images_unused = answer.label_images_unused
        report.label_images_thinned = answer.label_images_thinned

    def wait_for_subscribers(self, limit_s: float = 3.0) -> None:
        """Give discovery time to match the publishers (until the number of
        matched subscriptions stops growing), so no first frames are lost."""
        deadline, last, stable_since = time.monotonic() + limit_s, -1, time.monotonic()
        while time.monotonic() < deadline:
            matched = sum(p.get_subscription_count() for p in self._bag_publishers.values() if p)
            if matched != last:
                last, stable_since = matched, time.monotonic()
            elif matched and time.monotonic() - stable_since > 0.5:
                return
            time.sleep(0.05)

    def wait_for_accumulator(self, timeout: float = 30.0) -> None:
        """Wait until the accumulator serves begin/end and its subscriptions match."""
        for client in (self._begin, self._end):
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {client.srv_name} is not available")
        self.wait_for_subscribers()

    def begin_revisit(self, label: str, timeout: float = 30.0) -> BeginRevisit.Response:
        return self.call(self._begin, BeginRevisit.Request(label=label), timeout)

    def end_revisit(self, sent: dict[str, int] | None = None) -> EndRevisit.Response:
        """Close the revisit once the images ``sent`` (kind -> count) arrived;
        the accumulator answers once its backlog is fused."""
        sent = sent or {}
        request = EndRevisit.Request(color_sent=sent.get("color", 0),
                                     depth_sent=sent.get("depth", 0),
                                     arrival_timeout_s=ARRIVAL_TIMEOUT_S)
        return self.call(self._end, request, timeout=120.0 + ARRIVAL_TIMEOUT_S, was_ready=True)

    def mapped_epochs(self, timeout: float = 10.0) -> int:
        """How many epochs the mapper's memory holds now, asked through its query
        service (its latched topic may not have arrived yet); falls back to the
        epochs seen on that topic if the service does not answer."""
        try:
            answer = self.call(self._query, QueryObjects.Request(ids=[0]), timeout)
        except TimeoutError:
            self.get_logger().warning(f"{self._query.srv_name} did not answer; counting "
                                      "epochs from the mapper's topic")
            return self.latest_epoch + 1
        return answer.epoch + 1 if answer.success else 0

    @property
    def latest_epoch(self) -> int:
        """The newest epoch the mapper published (-1: none yet)."""
        return max(self.epoch_times, default=-1)

    def wait_for_epoch(self, epoch: int, timeout: float) -> bool:
        """Wait until the mapper has published ``epoch`` (or a later one)."""
        deadline = time.monotonic() + timeout
        while self.latest_epoch < epoch:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


class SpinThread:
    """An executor spinning nodes on a background thread (so the caller may block);
    single-threaded for the reason given in ``stseg_ros.ros.executor``."""

    def __init__(self, *nodes: Node) -> None:
        self.executor = SingleThreadedExecutor()
        for node in nodes:
            self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.thread.join(timeout=5.0)


class Recorder(Node):
    """Writes the messages of some topics to a rosbag2 (MCAP), as received."""

    def __init__(self, path: Path, topics: dict[str, tuple[str, QoSProfile]]) -> None:
        super().__init__("stseg_recorder")
        from rosbags.rosbag2 import StoragePlugin, Writer

        typestore = output_typestore()
        self._writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}
        for topic, (msgtype, qos) in topics.items():
            conn = self._writer.add_connection(topic, msgtype, typestore=typestore)
            self.counts[topic] = 0
            self.create_subscription(message_class(msgtype), topic,
                                     lambda raw, c=conn, t=topic: self._write(c, t, raw),
                                     qos, raw=True)

    def _write(self, conn, topic: str, raw: bytes) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.write(conn, time.time_ns(), raw)
                self.counts[topic] += 1

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None


def output_topics(mapper: str = "/mapper") -> dict[str, tuple[str, QoSProfile]]:
    """The mapper's outputs, with the QoS they are published with."""
    from stseg_ros.ros.qos import CHANGE_EVENTS_QOS

    return {f"{mapper}/instances": ("stseg_ros/msg/ObjectInstanceArray", MAP_STATE_QOS),
            f"{mapper}/detections": ("vision_msgs/msg/Detection3DArray", MAP_STATE_QOS),
            f"{mapper}/markers": ("visualization_msgs/msg/MarkerArray", MAP_STATE_QOS),
            f"{mapper}/changes": ("stseg_ros/msg/ChangeEventArray", CHANGE_EVENTS_QOS),
            f"{mapper}/segmented_cloud": ("sensor_msgs/msg/PointCloud2", MAP_STATE_QOS)}


def output_typestore():
    """The ROS 2 Kilted types plus this package's messages and vision_msgs'
    (rosbags' Kilted store has none of vision_msgs), for writing and reading
    recorded outputs with rosbags."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for package in ("stseg_ros", "vision_msgs"):
        for path in sorted(interface_dir(package).glob("*.msg")):
            types.update(get_types_from_msg(path.read_text(), f"{package}/msg/{path.stem}"))
    typestore.register(types)
    return typestore


def interface_dir(package: str = "stseg_ros") -> Path:
    """A package's msg/ folder: this package's sources (msg/, and the
    vision_msgs definitions the pip set-up generates, interfaces/vision_msgs/msg)
    or the installed share/PACKAGE/msg."""
    root = Path(__file__).resolve().parents[2]
    source = root / "msg" if package == "stseg_ros" else root / "interfaces" / package / "msg"
    if source.is_dir():
        return source
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(package)) / "msg"


def _create_publishers(replayer: Replayer, bags: list[Path]) -> None:
    """Create the publishers of all the bags' topics up front, so discovery
    matches them before the first message."""
    from rosbags.highlevel import AnyReader

    for bag in bags:
        with AnyReader([bag]) as reader:
            for conn in reader.connections:
                replayer.publisher(conn.topic, conn.msgtype)


def replay(bags: list[Path], rate: float = 1.0, revisit_calls: bool = True,
           accumulator: str = "/accumulator", mapper: str = "/mapper", namespace: str = "",
           clock: bool = True, record: Path | None = None, wait_s: float = 0.0,
           progress: Callable[[str], None] = print) -> list[BagReport]:
    """Replay bags in order (one revisit each when ``revisit_calls``); with
    ``wait_s``, then wait that long at most for the mapper to publish them all."""
    import rclpy

    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    owns_context = not rclpy.ok()
    if owns_context:
        rclpy.init()
    replayer = Replayer(accumulator, mapper, namespace, clock)
    nodes: list[Node] = [replayer]
    recorder = Recorder(Path(record), output_topics(mapper)) if record else None
    if recorder:
        nodes.append(recorder)
    spinner = SpinThread(*nodes)
    try:
        _create_publishers(replayer, bags)
        if revisit_calls:
            replayer.wait_for_accumulator()
        else:
            replayer.wait_for_subscribers()
        first = replayer.mapped_epochs() if wait_s > 0 and revisit_calls else 0
        reports = [replayer.play(bag, rate, revisit_calls, progress) for bag in bags]
        if wait_s > 0 and revisit_calls:
            target = first + len(bags) - 1
            progress(f"waiting up to {wait_s:.0f} s for the mapper to publish epoch {target} ...")
            if not replayer.wait_for_epoch(target, wait_s):
                raise TimeoutError(f"the mapper published epochs up to {replayer.latest_epoch}, "
                                   f"not {target}, within {wait_s:.0f} s")
            if recorder:
                time.sleep(1.0)                  # the last messages reach the recorder too
        return reports
    finally:
        spinner.stop()
        if recorder:
            recorder.close()
            progress(f"recorded {sum(recorder.counts.values())} messages to {record}")
        for node in nodes:
            node.destroy_node()
        if owns_context:
            rclpy.try_shutdown()
