"""RGB-D frames with camera poses, checked before use.

A frame pairs a colour and a depth image of the same stamp with the camera
intrinsics and the camera pose in the frame the revisit is fused in (its
odom frame), from whatever source: a bag, a frame folder, the live nodes
(``stseg_ros/sources``, ``ingest``). Frames that cannot be used are not
dropped silently: they come back as ``SkippedFrame`` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stseg_ros.core.camera import Intrinsics


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


@dataclass
class LabelImage:
    """A label image of the robot's 2D segmenter (per-pixel class ids, 0: none),
    stamped as the colour image it labels; ``labels`` is None with ``reason``
    when the image could not be read."""

    stamp_ns: int
    labels: np.ndarray | None
    reason: str = ""


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


def intrinsics_from_camera_info(msg) -> Intrinsics | None:
    k = np.asarray(msg.k, dtype=float).reshape(3, 3)
    if k[0, 0] <= 0 or k[1, 1] <= 0 or msg.width == 0 or msg.height == 0:
        return None                                   # an unset camera_info
    return Intrinsics(int(msg.width), int(msg.height), k[0, 0], k[1, 1], k[0, 2], k[1, 2])
