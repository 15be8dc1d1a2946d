"""RGB-D frame folders (TUM, 7-Scenes, ScanNet exports): image files and poses
on disk, read into the same checked ``RgbdFrame``s a bag gives."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stseg_ros.core.camera import Intrinsics
from stseg_ros.core.images import read_color_file, read_depth_file
from stseg_ros.mapping.frames import RgbdFrame, SkippedFrame, check_frame
from stseg_ros.sources.base import InputError, RevisitInput, Source, SourceConfig


@dataclass
class FrameFiles:
    """One frame of a folder: its stamp, image files and camera-to-world pose."""

    stamp_ns: int
    color: Path
    depth: Path
    pose: np.ndarray | None          # (4, 4) camera-to-world, None when unknown


def read_matrix(path: Path, shape: tuple[int, int] = (4, 4)) -> np.ndarray:
    """A whitespace-separated matrix file; a malformed one is an InputError naming it."""
    try:
        m = np.loadtxt(path, dtype=float, ndmin=2)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable {shape[0]}x{shape[1]} matrix ({err})") from None
    if m.shape != shape:
        if m.size == shape[0] * shape[1]:
            return m.reshape(shape)
        raise InputError(f"{path}: expected a {shape[0]}x{shape[1]} matrix, got {m.shape}")
    return m


def read_pose_file(path: Path) -> np.ndarray | None:
    """A 4x4 camera-to-world pose file; None where the pose is invalid (ScanNet
    writes -inf for frames its tracker lost), so the frame is skipped, not fused."""
    pose = read_matrix(path)
    return pose if np.isfinite(pose).all() else None


def intrinsics_override(cfg: SourceConfig, width: int, height: int) -> Intrinsics | None:
    """``source.intrinsics`` ("fx,fy,cx,cy") for the given image size, if set."""
    if not cfg.intrinsics:
        return None
    try:
        fx, fy, cx, cy = (float(v) for v in cfg.intrinsics.split(","))
    except ValueError:
        raise InputError(f"source.intrinsics {cfg.intrinsics!r}: expected 'fx,fy,cx,cy'") from None
    return Intrinsics(width, height, fx, fy, cx, cy)


def _fit_color(color: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Colour resampled to the depth image's size (ScanNet colour is 1296x968,
    its depth 640x480; both cover the same view once registered)."""
    if color.shape[:2] == shape:
        return color
    from PIL import Image

    return np.asarray(Image.fromarray(color).resize((shape[1], shape[0]), Image.BILINEAR))


def read_frame_files(files: Sequence[FrameFiles], intrinsics: Intrinsics, depth_scale: float,
                     stride: int = 1) -> Iterator[RgbdFrame | SkippedFrame]:
    """Every ``stride``-th frame, decoded and checked; unreadable or unposed
    frames come back as ``SkippedFrame`` with the reason."""
    for f in files[::max(1, stride)]:
        try:
            depth = read_depth_file(f.depth, depth_scale)
            color = _fit_color(read_color_file(f.color), depth.shape)
        except (OSError, ValueError) as err:
            yield SkippedFrame(f.stamp_ns, str(err))
            continue
        if f.pose is None:
            yield SkippedFrame(f.stamp_ns, "no valid camera pose for this frame")
            continue
        frame = RgbdFrame(f.stamp_ns, color, depth, intrinsics, f.pose)
        reason = check_frame(frame)
        yield frame if reason is None else SkippedFrame(f.stamp_ns, reason)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file, without decoding it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError) as err:
        raise InputError(f"{path}: not a readable image ({err})") from None


class FolderSource(Source):
    """A format of image files and poses on disk; subclasses list the frames."""

    def frame_revisit(self, files: list[FrameFiles], intrinsics: Intrinsics,
                      depth_scale: float) -> list[RevisitInput]:
        """The folder as one revisit of ``files`` (``source.depth_scale``, when
        set, overrides the format's ``depth_scale``)."""
        scale = self.cfg.depth_scale or depth_scale
        return [self.revisit(frames=lambda: read_frame_files(files, intrinsics, scale,
                                                             self.cfg.frame_stride))]
