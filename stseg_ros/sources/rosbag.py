"""rosbag2 recordings (MCAP or sqlite3; a bag folder or a bare ``.mcap`` /
``.db3`` file) with any topic names.

Colour is ``sensor_msgs/Image`` or ``CompressedImage`` (jpeg / png), depth an
``Image`` (16UC1 mm, 32FC1 m) or ``compressedDepth``, registered to colour.
The camera pose is looked up in the bag's whole TF tree (``/tf`` and
``/tf_static``, any chain such as map -> odom -> base_link -> camera) at each
colour stamp, interpolated; ``nav_msgs/Odometry`` messages join the tree as
the edges they describe (full 3D) where ``/tf`` lacks them. Topics left
empty in ``SourceConfig`` are found in the bag: first the layouts of known
drivers (this package, ``realsense2_camera``, ``zed_wrapper``), then by type
and name. The bag is read twice (transforms and camera_info first), so no
frame waits for a pose that comes later in the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from stseg_ros.core.images import decode_image, decode_label_image
from stseg_ros.ingest.tf_buffer import TfBuffer
from stseg_ros.mapping.frames import (
    LabelImage,
    RgbdFrame,
    SkippedFrame,
    check_frame,
    intrinsics_from_camera_info,
    stamp_ns,
)
from stseg_ros.sources.base import InputError, Source, SourceConfig, strided
from stseg_ros.sources.mcap_salvage import salvage, write_salvaged

logger = logging.getLogger(__name__)   # warnings; ``log`` arguments get info lines

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
ODOMETRY = "nav_msgs/msg/Odometry"
TF = "tf2_msgs/msg/TFMessage"

# (colour, depth) topics of known drivers, without the image_transport suffix
LAYOUTS = {
    "stseg_ros": ("/camera/color/image_raw", "/camera/depth/image_raw"),
    "realsense2_camera": ("/camera/camera/color/image_raw",
                          "/camera/camera/aligned_depth_to_color/image_raw"),
    "realsense2_camera (before 4.55.1)": ("/camera/color/image_raw",
                                        "/camera/aligned_depth_to_color/image_raw"),
    "zed_wrapper": ("/zed/zed_node/rgb/color/rect/image",
                    "/zed/zed_node/depth/depth_registered"),
    "zed_wrapper (before 5.1)": ("/zed/zed_node/rgb/image_rect_color",
                                 "/zed/zed_node/depth/depth_registered"),
    "zed_wrapper (ZED 2)": ("/zed2/zed_node/rgb/image_rect_color",
                            "/zed2/zed_node/depth/depth_registered"),
}


@dataclass(frozen=True)
class BagTopics:
    """The topics a bag is read from, and which driver layout they matched."""

    color: str
    depth: str
    camera_info: str
    odometry: str
    layout: str


def is_bag(path: Path) -> bool:
    return ((path.is_dir() and (path / "metadata.yaml").is_file())
            or (path.is_file() and path.suffix in (".mcap", ".db3")))


def _image_topics(types: dict[str, str]) -> dict[str, str]:
    return {t: k for t, k in types.items() if k in (IMAGE, COMPRESSED)}


def choose_topics(types: dict[str, str], cfg: SourceConfig, where: str) -> BagTopics:
    """Topics for colour, depth, camera_info and odometry: the configured ones,
    else a known driver's layout, else by type and name (raw before compressed)."""
    images, layout = _image_topics(types), "configured"
    color, depth = cfg.color_topic, cfg.depth_topic
    if not (color and depth):
        for name, (c, d) in LAYOUTS.items():
            c_found = next((t for t in (c, c + "/compressed") if t in images), "")
            d_found = next((t for t in (d, d + "/compressedDepth") if t in images), "")
            if c_found and d_found:
                color, depth, layout = color or c_found, depth or d_found, name
                break
    where = f"{where} (topics: {', '.join(f'{t} [{k}]' for t, k in sorted(types.items()))})" \
        if not images else where
    if not color:
        color = _best(images, ("color", "rgb"), ("depth",), ("rect", "raw"), where, "colour")
        layout = "detected by name"
    if not depth:
        depth = _best(images, ("depth",), ("confidence", "disparity"),
                      ("aligned", "registered"), where, "depth")
        layout = "detected by name"
    for topic, what in ((color, "colour"), (depth, "depth")):
        if topic not in images:
            raise InputError(f"{where}: {what} topic {topic!r} is not an Image/CompressedImage "
                             f"topic of the bag (has: {', '.join(sorted(images)) or 'none'})")
    infos = [t for t, k in types.items() if k == CAMERA_INFO]
    info = cfg.camera_info_topic or max(infos, key=lambda t: (_common(t, color), -len(t)),
                                        default="")
    if not info or info not in infos:
        raise InputError(f"{where}: no sensor_msgs/CameraInfo topic "
                         f"{'named ' + repr(info) if info else 'in the bag'} (set "
                         "source.camera_info_topic)")
    odom = cfg.odometry_topic or next((t for t, k in sorted(types.items()) if k == ODOMETRY), "")
    return BagTopics(color, depth, info, odom, layout)


def _common(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _best(images: dict[str, str], need: tuple[str, ...], avoid: tuple[str, ...],
          prefer: tuple[str, ...], where: str, what: str) -> str:
    names = [t for t in images if any(w in t.lower() for w in need)
             and not any(w in t.lower() for w in avoid)]
    if what == "colour":
        names = [t for t in names if "depth" not in t.lower()]
    if not names:
        key = "color_topic" if what == "colour" else "depth_topic"
        raise InputError(f"{where}: no {what} image topic found (image topics: "
                         f"{', '.join(sorted(images)) or 'none'}); set source.{key}")
    return min(names, key=lambda t: (images[t] != IMAGE, not any(p in t for p in prefer), t))


class RosbagSource(Source):
    name = "rosbag"
    description = "rosbag2 (MCAP or sqlite3) with any topic names, raw or compressed images"

    @classmethod
    def detect(cls, path) -> bool:
        return is_bag(path)

    def revisits(self):
        return [self.revisit(frames=lambda: strided(
            read_bag_frames(self.path, self.cfg, self.log, self.label_topic),
            self.cfg.frame_stride))]


def _open(bag: Path):
    """A rosbags Reader of ``bag``, or for an MCAP bag cut short the reader of
    its salvaged part (one warning says what was lost)."""
    from rosbags.rosbag2 import Reader

    try:
        reader = Reader(bag)
        reader.open()
    except Exception as err:          # rosbags raises several unrelated types
        found = salvage(bag)
        if found is None:
            raise InputError(f"{bag}: not a readable rosbag2 ({err})") from None
        logger.warning("%s; the frames before the cut are used", found.describe())
        return found
    return reader


def replayable(bag: Path, spare: Path) -> Path:
    """``bag`` if ``stseg replay`` can read it (a rosbag2 folder or file, or a
    ROS 1 bag, as rosbags' AnyReader takes); for an MCAP bag cut short, a copy
    of its readable part written under ``spare`` (one warning says what was
    lost), named so its revisit keeps its label; else an InputError naming it."""
    from rosbags.highlevel import AnyReader

    bag = Path(bag)
    try:
        with AnyReader([bag]):
            return bag
    except Exception as err:          # rosbags raises several unrelated types
        found = salvage(bag)
        if found is None:
            reason = " ".join(str(err).split()) or type(err).__name__
            raise InputError(f"{bag}: not a readable bag ({reason})") from None
    name = Path(bag.parent.name, "bag") if bag.name == "bag" else Path(bag.stem)
    copy = write_salvaged(found, Path(spare) / f"{len(list(Path(spare).iterdir()))}" / name)
    logger.warning("%s; replaying those (copied to %s)", found.describe(), copy)
    return copy


def read_bag_frames(bag: Path, cfg: SourceConfig | None = None, log=None,
                    label_topic: str = "") -> Iterator[RgbdFrame | SkippedFrame | LabelImage]:
    """Posed, checked frames of a bag in stamp order (``log`` gets one line
    naming the topics and frames used), and the images of ``label_topic``
    (the robot's 2D labels) as they come."""
    from rosbags.typesys import Stores, get_typestore

    cfg = cfg or SourceConfig()
    if cfg.pose_source not in ("auto", "tf", "odometry"):
        raise InputError(f"source.pose_source {cfg.pose_source!r}: expected auto, tf or "
                         "odometry")
    ts = get_typestore(Stores.ROS2_KILTED)
    reader = _open(bag)
    try:
        types = {c.topic: c.msgtype for c in reader.connections}
        topics = choose_topics(types, cfg, str(bag))
        tf, intrinsics, camera_frame = TfBuffer(cache_s=1e9, jump_back_s=1e9), None, None
        use_tf = cfg.pose_source in ("auto", "tf")
        use_odom = cfg.pose_source in ("auto", "odometry") and topics.odometry
        pose_topics = {topics.camera_info} | ({t for t, k in types.items() if k == TF}
                                              if use_tf else set())
        pose_topics |= {t for t, k in types.items() if k == TF and "static" in t}
        if use_odom:
            pose_topics.add(topics.odometry)
        tf_edges: set[str] = set()
        odom_msgs = []
        damage: list[str] = []
        for conn, _, raw in _messages(reader, pose_topics, damage):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            if conn.msgtype == CAMERA_INFO:
                intrinsics = intrinsics or intrinsics_from_camera_info(msg)
            elif conn.msgtype == TF:
                static = "static" in conn.topic
                for t in msg.transforms:
                    _add(tf, t.header.frame_id, t.child_frame_id, stamp_ns(t.header),
                         t.transform.translation, t.transform.rotation, static)
                    if not static:
                        tf_edges.add(t.child_frame_id.lstrip("/"))
            else:
                odom_msgs.append(msg)
        for msg in odom_msgs:        # odometry only where /tf does not carry that edge
            child = msg.child_frame_id.lstrip("/")
            if child and child not in tf_edges:
                p = msg.pose.pose
                _add(tf, msg.header.frame_id, child, stamp_ns(msg.header), p.position,
                     p.orientation, False)
        wait = [topics.color, topics.depth, topics.camera_info]
        if label_topic:
            if types.get(label_topic) != IMAGE:
                raise InputError(f"{bag}: label topic {label_topic!r} is not a "
                                 "sensor_msgs/Image topic of the bag (image topics: "
                                 f"{', '.join(sorted(_image_topics(types))) or 'none'})")
            wait.append(label_topic)
        pending: dict[str, dict[int, object]] = {"color": {}, "depth": {}}
        gap = int(cfg.max_pair_gap_s * 1e9)
        world = cfg.world_frame
        told = False
        for conn, _, raw in _messages(reader, set(wait), damage):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            stamp = stamp_ns(msg.header)
            if conn.topic == topics.camera_info:
                intrinsics = intrinsics_from_camera_info(msg) or intrinsics
                continue
            if conn.topic == label_topic:
                try:
                    yield LabelImage(stamp, decode_label_image(msg))
                except ValueError as err:
                    yield LabelImage(stamp, None, f"{conn.topic}: {err}")
                continue
            kind = "color" if conn.topic == topics.color else "depth"
            if kind == "color":
                camera_frame = cfg.camera_frame or msg.header.frame_id.lstrip("/") or None
            try:
                image = decode_image(msg)
            except ValueError as err:
                yield SkippedFrame(stamp, f"{conn.topic}: {err}")
                continue
            other = "depth" if kind == "color" else "color"
            match = next((s for s in pending[other] if abs(s - stamp) <= gap), None)
            if match is None:
                pending[kind][stamp] = (image, camera_frame)
                continue
            partner, partner_frame = pending[other].pop(match)
            color, depth = (image, partner) if kind == "color" else (partner, image)
            frame_id = camera_frame if kind == "color" else partner_frame
            pose = None
            if frame_id is not None:
                world = world or tf.root(frame_id)
                if not told and log is not None:
                    log(f"{bag.name}: colour {topics.color}, depth {topics.depth}, camera_info "
                        f"{topics.camera_info} ({topics.layout}); camera {frame_id} in {world}")
                    told = True
                pose = tf.lookup(world, frame_id, stamp, int(cfg.max_pose_gap_s * 1e9))
            frame = RgbdFrame(stamp, color, depth, intrinsics, pose)
            reason = check_frame(frame)
            if reason is not None and reason.startswith("no camera pose"):
                reason = (f"no camera pose: no transform {world} <- {frame_id} near this stamp "
                          "(/tf, /tf_static or odometry)" if frame_id else
                          "colour image has no frame_id (set source.camera_frame)")
            yield frame if reason is None else SkippedFrame(stamp, reason)
        for kind, left in pending.items():
            for stamp in left:
                yield SkippedFrame(stamp, f"{kind} image without a partner")
        if damage:
            yield SkippedFrame(-1, f"the rest of the bag is unreadable ({damage[0]}); the "
                                   "frames before the damage were read")
    finally:
        reader.close()


def _messages(reader, topics: set[str], damage: list[str]):
    """The bag's messages on ``topics``, up to where a truncated or damaged file
    stops being readable (the reason is appended to ``damage``)."""
    conns = [c for c in reader.connections if c.topic in topics]
    try:
        yield from reader.messages(connections=conns)
    except Exception as err:          # rosbags' storage errors have no common base
        if not damage:
            damage.append(f"{type(err).__name__}: {err}")


def _add(tf: TfBuffer, parent, child, stamp, translation, rotation, static: bool) -> None:
    try:
        tf.add(parent, child, stamp, (translation.x, translation.y, translation.z),
               (rotation.x, rotation.y, rotation.z, rotation.w), static)
    except ValueError:
        pass                       # a malformed transform: the frames that need it are skipped
