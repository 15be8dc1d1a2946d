"""``stseg replay``: publish recorded rosbag2 bags (MCAP or sqlite3) into the
nodes with their original timing, and optionally record the mapper's outputs.

Messages are published as recorded (serialized CDR, no decoding), at the
bags' pace scaled by ``rate``, with ``/clock`` following the bag time for
nodes run with use_sim_time. Around each bag the accumulator's
``begin_revisit`` / ``end_revisit`` are called, so one bag is one revisit.
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
from stseg_ros.srv import BeginRevisit, EndRevisit

CLOCK_TOPIC = "/clock"
END_DELAY_S = 0.5                                   # s between a bag's end and end_revisit
GLOBAL_TOPICS = ("/tf", "/tf_static", CLOCK_TOPIC)    # not moved into a namespace


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
    skipped_topics: list[str] = field(default_factory=list)


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

    def call(self, client, request, timeout: float = 30.0):
        """Call a service (the executor thread delivers the answer)."""
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} is not available")
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"service {client.srv_name} did not answer in {timeout} s")
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
            report.seconds = (last_clock - start_bag) / 1e9 if start_bag is not None else 0.0
        report.wall_seconds = time.monotonic() - start_wall
        if revisit_calls:
            time.sleep(END_DELAY_S)     # the last frames reach the accumulator first
            answer = self.end_revisit()
            report.frames_fused, report.frames_dropped = answer.frames_fused, answer.frames_dropped
            report.frames_overflow = answer.frames_overflow
        progress(f"{bag}: {report.messages} messages, {report.seconds:.1f} s of bag in "
                 f"{report.wall_seconds:.1f} s (worst lag {report.late_ms:.0f} ms)"
                 + (f"; revisit {report.revisit}: {report.frames_fused} frames fused, "
                    f"{report.frames_dropped} dropped"
                    + (f" ({report.frames_overflow} as fusion fell behind)"
                       if report.frames_overflow else "") if revisit_calls else ""))
        return report

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

    def begin_revisit(self, label: str) -> BeginRevisit.Response:
        return self.call(self._begin, BeginRevisit.Request(label=label))

    def end_revisit(self) -> EndRevisit.Response:
        """Close the revisit; the accumulator answers once its backlog is fused."""
        return self.call(self._end, EndRevisit.Request(), timeout=120.0)

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
            f"{mapper}/markers": ("visualization_msgs/msg/MarkerArray", MAP_STATE_QOS),
            f"{mapper}/changes": ("stseg_ros/msg/ChangeEventArray", CHANGE_EVENTS_QOS),
            f"{mapper}/segmented_cloud": ("sensor_msgs/msg/PointCloud2", MAP_STATE_QOS)}


def output_typestore():
    """The ROS 2 Kilted types plus this package's messages, for writing and
    reading recorded outputs with rosbags."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    typestore = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(interface_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"stseg_ros/msg/{path.stem}"))
    typestore.register(types)
    return typestore


def interface_dir() -> Path:
    """The package's msg/ folder: installed (share/stseg_ros/msg) or in the sources."""
    source = Path(__file__).resolve().parents[2] / "msg"
    if source.is_dir():
        return source
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("stseg_ros")) / "msg"


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
        first = replayer.latest_epoch + 1
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
