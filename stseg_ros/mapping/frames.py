"""RGB-D frames with camera poses, from a revisit's rosbag2, checked before use.

A frame pairs a colour and a depth image of the same stamp with the camera
intrinsics and the camera pose in the revisit's odom frame, composed from
odometry (``/odom``, interpolated to the image stamp) and the static
base_link -> camera transform (``/tf_static``). Frames that cannot be used
are not dropped silently: they come back as ``SkippedFrame`` with the reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stseg_ros.core.camera import Intrinsics
from stseg_ros.core.pointcloud import planar_pose, rigid_transform
from stseg_ros.core.records import Pose
from stseg_ros.core.topics import TOPICS

MAX_PAIR_GAP_NS = 20_000_000      # colour and depth further apart than this do not pair
MAX_POSE_GAP_NS = 200_000_000     # no odometry within this of an image: no pose


@dataclass
class RgbdFrame:
    stamp_ns: int
    color: np.ndarray               # (H, W, 3) uint8 RGB
    depth: np.ndarray               # (H, W) float32 metres, 0 = no return
    intrinsics: Intrinsics | None
    odom_from_camera: np.ndarray | None   # (4, 4)


@dataclass
class SkippedFrame:
    stamp_ns: int
    reason: str


def stamp_ns(header) -> int:
    """A std_msgs/Header's stamp in nanoseconds (rclpy and rosbags messages alike)."""
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def check_frame(frame: RgbdFrame) -> str | None:
    """Why a frame cannot be fused, or None if it can."""
    if frame.intrinsics is None:
        return "no camera_info before this frame"
    if frame.odom_from_camera is None or not np.isfinite(frame.odom_from_camera).all():
        return "no camera pose (odometry or /tf_static missing near this stamp)"
    if frame.color.ndim != 3 or frame.color.shape[2] != 3:
        return f"colour image has shape {frame.color.shape}, expected (H, W, 3)"
    if frame.depth.shape != frame.color.shape[:2]:
        return f"depth {frame.depth.shape} and colour {frame.color.shape[:2]} sizes differ"
    if (frame.intrinsics.height, frame.intrinsics.width) != frame.depth.shape:
        return (f"camera_info is {frame.intrinsics.width}x{frame.intrinsics.height}, "
                f"images are {frame.depth.shape[1]}x{frame.depth.shape[0]}")
    if np.isnan(frame.depth).all() or not np.nan_to_num(frame.depth).any():
        return "depth has no valid pixel (all zero or NaN)"
    return None


_BYTES = {"rgb8": 3, "bgr8": 3, "16UC1": 2, "mono16": 2, "32FC1": 4}


def decode_image(msg) -> np.ndarray:
    """rgb8/bgr8 to (H, W, 3) RGB uint8; 16UC1 (mm) and 32FC1 (m) to float32 metres."""
    h, w, enc = int(msg.height), int(msg.width), msg.encoding
    if enc not in _BYTES:
        raise ValueError(f"unsupported image encoding {enc!r} (expected one of {sorted(_BYTES)})")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if h == 0 or w == 0 or len(data) < h * int(msg.step) or int(msg.step) < w * _BYTES[enc]:
        raise ValueError(f"{enc} image {w}x{h} with step {msg.step} needs "
                         f"{h * int(msg.step)} bytes, got {len(data)}")
    data = data[:h * int(msg.step)]
    if enc in ("rgb8", "bgr8"):
        img = data.reshape(h, int(msg.step))[:, :w * 3].reshape(h, w, 3)
        return img[..., ::-1].copy() if enc == "bgr8" else img.copy()
    big = ">" if msg.is_bigendian else "<"
    if enc in ("16UC1", "mono16"):
        raw = data.reshape(h, int(msg.step))[:, :w * 2].copy().view(f"{big}u2")
        return raw.astype(np.float32) / 1000.0
    return data.reshape(h, int(msg.step))[:, :w * 4].copy().view(f"{big}f4").astype(np.float32)


def _transform(t) -> np.ndarray:
    q, p = t.rotation, t.translation
    return rigid_transform((p.x, p.y, p.z), (q.x, q.y, q.z, q.w))


class OdometryTrack:
    """Planar odometry samples, interpolated to any stamp between two of them."""

    def __init__(self) -> None:
        self.stamps: list[int] = []
        self.poses: list[tuple[float, float, float, float]] = []   # x, y, z, yaw

    def add(self, stamp_ns: int, x: float, y: float, z: float, yaw: float) -> None:
        if self.stamps and stamp_ns <= self.stamps[-1]:
            return                                    # out of order or repeated: ignored
        self.stamps.append(stamp_ns)
        self.poses.append((x, y, z, yaw))

    def at(self, stamp_ns: int) -> np.ndarray | None:
        if not self.stamps:
            return None
        k = int(np.searchsorted(self.stamps, stamp_ns))
        if k < len(self.stamps) and self.stamps[k] == stamp_ns:
            pose = self.poses[k]
        elif 0 < k < len(self.stamps):
            t0, t1 = self.stamps[k - 1], self.stamps[k]
            if t1 - t0 > MAX_POSE_GAP_NS:
                return None
            a = (stamp_ns - t0) / (t1 - t0)
            p0, p1 = self.poses[k - 1], self.poses[k]
            dyaw = math.atan2(math.sin(p1[3] - p0[3]), math.cos(p1[3] - p0[3]))
            pose = tuple(p0[i] + a * (p1[i] - p0[i]) for i in range(3)) + (p0[3] + a * dyaw,)
        else:
            near = self.stamps[min(k, len(self.stamps) - 1)]
            if abs(near - stamp_ns) > MAX_POSE_GAP_NS // 10:
                return None
            pose = self.poses[min(k, len(self.poses) - 1)]
        x, y, z, yaw = pose
        return planar_pose(x, y, yaw, z)


def intrinsics_from_camera_info(msg) -> Intrinsics | None:
    k = np.asarray(msg.k, dtype=float).reshape(3, 3)
    if k[0, 0] <= 0 or k[1, 1] <= 0 or msg.width == 0 or msg.height == 0:
        return None                                   # an unset camera_info
    return Intrinsics(int(msg.width), int(msg.height), k[0, 0], k[1, 1], k[0, 2], k[1, 2])


def read_bag_frames(bag: Path, topics: dict[str, str] = TOPICS
                    ) -> Iterator[RgbdFrame | SkippedFrame]:
    """Frames of a revisit bag in stamp order (read twice: poses and the first
    camera_info first, so a frame never waits for a pose that comes later)."""
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    track, base_to_camera = OdometryTrack(), None
    with Reader(bag) as reader:
        pose_conns = [c for c in reader.connections if c.topic in (
            topics["odometry"], topics["tf_static"], topics["camera_info"])]
        intrinsics = None
        for conn, _, raw in reader.messages(connections=pose_conns):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            if conn.topic == topics["camera_info"]:
                # the first, for frames before it
                intrinsics = intrinsics or intrinsics_from_camera_info(msg)
            elif conn.topic == topics["tf_static"]:
                for tf in msg.transforms:
                    base_to_camera = _transform(tf.transform)
            else:
                p, q = msg.pose.pose.position, msg.pose.pose.orientation
                yaw = Pose((p.x, p.y, p.z), (q.x, q.y, q.z, q.w)).yaw
                stamp = stamp_ns(msg.header)
                track.add(stamp, p.x, p.y, p.z, yaw)
        image_conns = [c for c in reader.connections
                       if c.topic in (topics["color"], topics["depth"], topics["camera_info"])]
        pending: dict[str, dict[int, np.ndarray]] = {}
        for conn, _, raw in reader.messages(connections=image_conns):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            stamp = stamp_ns(msg.header)
            if conn.topic == topics["camera_info"]:
                intrinsics = intrinsics_from_camera_info(msg)
                continue
            kind = "color" if conn.topic == topics["color"] else "depth"
            try:
                image = decode_image(msg)
            except ValueError as err:
                yield SkippedFrame(stamp, str(err))
                continue
            other = "depth" if kind == "color" else "color"
            match = next((s for s in pending.get(other, {})
                          if abs(s - stamp) <= MAX_PAIR_GAP_NS), None)
            if match is None:
                pending.setdefault(kind, {})[stamp] = image
                continue
            partner = pending[other].pop(match)
            color, depth = (image, partner) if kind == "color" else (partner, image)
            odom = track.at(stamp)
            pose = None if odom is None or base_to_camera is None else odom @ base_to_camera
            frame = RgbdFrame(stamp, color, depth, intrinsics, pose)
            reason = check_frame(frame)
            yield frame if reason is None else SkippedFrame(stamp, reason)
        for kind, left in pending.items():
            for stamp in left:
                yield SkippedFrame(stamp, f"{kind} image without a partner")
