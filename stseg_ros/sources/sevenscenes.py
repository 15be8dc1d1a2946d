"""Microsoft 7-Scenes frame folders: ``frame-XXXXXX.color.png|jpg``,
``frame-XXXXXX.depth.png`` (mm, 65535 = no return) and ``frame-XXXXXX.pose.txt``
(4x4 camera-to-world; the world is the first camera's frame, y down).

The Kinect's intrinsics are fx = fy = 585, principal point (320, 240) at
640x480, unless the folder has a ``camera-intrinsics.txt`` (3x3). Frames are
30 Hz; their stamps are the frame number / 30 s. A scene folder with
``seq-XX`` subfolders holds one revisit per sequence.
"""

from __future__ import annotations

import re

from stseg_ros.core.camera import Intrinsics
from stseg_ros.sources.base import InputError
from stseg_ros.sources.folder import (
    FolderSource,
    FrameFiles,
    image_size,
    intrinsics_override,
    read_matrix,
    read_pose_file,
)

_FRAME = re.compile(r"frame-(\d+)\.pose\.txt$")
FX = 585.0
FRAME_NS = 1_000_000_000 // 30


class SevenScenesSource(FolderSource):
    name = "7scenes"
    description = "7-Scenes frame folder (frame-XXXXXX.color/.depth/.pose files)"

    @classmethod
    def detect(cls, path) -> bool:
        return path.is_dir() and any(path.glob("frame-*.pose.txt"))

    def _files(self) -> list[FrameFiles]:
        files = []
        for pose_path in sorted(self.path.glob("frame-*.pose.txt")):
            match = _FRAME.search(pose_path.name)
            if match is None:
                continue
            stem = pose_path.name[:-len(".pose.txt")]
            color = next((self.path / f"{stem}.color.{ext}" for ext in ("png", "jpg")
                          if (self.path / f"{stem}.color.{ext}").is_file()),
                         self.path / f"{stem}.color.png")
            files.append(FrameFiles(int(match.group(1)) * FRAME_NS, color,
                                    self.path / f"{stem}.depth.png", read_pose_file(pose_path)))
        if not files:
            raise InputError(f"{self.path}: no frame-XXXXXX.pose.txt files")
        return files

    def _intrinsics(self, files: list[FrameFiles]) -> Intrinsics:
        width, height = image_size(files[0].depth)
        override = intrinsics_override(self.cfg, width, height)
        if override is not None:
            return override
        k_path = self.path / "camera-intrinsics.txt"
        if k_path.is_file():
            k = read_matrix(k_path, (3, 3))
            return Intrinsics(width, height, k[0, 0], k[1, 1], k[0, 2], k[1, 2])
        return Intrinsics(width, height, FX, FX, width / 2, height / 2)

    def revisits(self):
        files = self._files()
        intrinsics = self._intrinsics(files)
        return self.frame_revisit(files, intrinsics, 1000.0)
