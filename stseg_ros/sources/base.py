"""What every input source yields: revisits, each posed RGB-D frames or a fused scan.

A source reads one input format (a rosbag2, a folder of RGB-D frames, a
point cloud file) and turns it into ``RevisitInput`` records, so the offline
runner fuses and maps them exactly as the nodes do with a live stream:
frames go through ``FragmentFusion``, a fused scan straight to the mapper.
Frames that cannot be used come back as ``SkippedFrame`` with the reason,
never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from stseg_ros.core.fields import setting
from stseg_ros.core.layout import FormatError
from stseg_ros.mapping.frames import LabelImage, RgbdFrame, SkippedFrame


class InputError(FormatError):
    """An input cannot be read as the format it was taken for (names the file)."""


@dataclass(frozen=True)
class SourceConfig:
    """Settings of the input stage (``--set source.KEY=VALUE``)."""

    color_topic: str = ""          # bags: colour topic; empty: detected from the bag
    depth_topic: str = ""          # bags: depth topic (Image or compressedDepth); empty: detected
    camera_info_topic: str = ""    # bags: empty: the CameraInfo topic beside the colour topic
    odometry_topic: str = ""       # bags: nav_msgs/Odometry topic; empty: detected
    pose_source: str = setting(    # bags: tf, odometry, or auto (tf when it reaches the camera)
        "auto", choices=("auto", "tf", "odometry"))
    world_frame: str = ""          # bags: frame the scan is fused in; empty: the TF tree's root
    camera_frame: str = ""         # bags: empty: the colour images' frame_id
    depth_scale: float = setting(  # frame folders: depth PNG units per metre; 0: the format's
        0.0, low=0)
    intrinsics: str = ""           # frame folders: "fx,fy,cx,cy" instead of the format's own
    frame_stride: int = setting(1, low=1)  # fuse every k-th frame (long hand-held sequences)
    max_pair_gap_s: float = setting(  # s, colour and depth stamps further apart than this do
        0.02, low=0)               # not pair
    max_pose_gap_s: float = setting(  # s, no pose sample this close to an image: no pose
        0.2, low=0)
    cloud_voxel: float = setting(  # m, fused-scan files are thinned to one point per voxel
        0.02, low=0)


@dataclass
class RevisitInput:
    """One revisit of an input: call ``frames()`` (posed RGB-D) or ``cloud()`` (a
    fused scan: xyz (N, 3) float32 and rgb (N, 3) uint8), whichever is set."""

    label: str
    path: Path
    source: str
    frames: Callable[[], Iterator[RgbdFrame | SkippedFrame]] | None = None
    cloud: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None


class Source:
    """One input format. ``detect`` says whether a path is in it; ``revisits``
    lists the revisits it holds (most formats: one per path); ``log`` gets a
    line on what was found where the format has choices (a bag's topics)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, path: Path, cfg: SourceConfig,
                 log: Callable[[str], None] | None = None, label_topic: str = "") -> None:
        self.path, self.cfg, self.log = Path(path), cfg, log
        # the robot's 2D label images (``labels.topic``); only bags carry them
        self.label_topic = label_topic

    @classmethod
    def detect(cls, path: Path) -> bool:
        raise NotImplementedError

    def revisits(self) -> list[RevisitInput]:
        raise NotImplementedError

    def revisit(self, **what) -> RevisitInput:
        """This path as one revisit labelled by its name."""
        return RevisitInput(self.path.stem if self.path.is_file() else self.path.name,
                            self.path, self.name, **what)


def strided(frames: Iterator[RgbdFrame | SkippedFrame | LabelImage], stride: int
            ) -> Iterator[RgbdFrame | SkippedFrame | LabelImage]:
    """Every ``stride``-th usable frame (skips and label images are always passed
    on, to be counted or matched)."""
    k = 0
    for frame in frames:
        if not isinstance(frame, RgbdFrame):
            yield frame
            continue
        if k % max(1, stride) == 0:
            yield frame
        k += 1
