"""ScanNet's exported ``.sens`` layout (``SensReader``): ``color/N.jpg``,
``depth/N.png`` (mm), ``pose/N.txt`` (4x4 camera-to-world, ``-inf`` where
tracking was lost) and ``intrinsic/intrinsic_depth.txt`` (4x4).

Colour (1296x968) is resampled to the depth image's size (640x480); the two
are registered by ScanNet's export, so the depth intrinsics serve both.
ScanNet scans are z up. Stamps are the frame number / 30 s.
"""

from __future__ import annotations

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

FRAME_NS = 1_000_000_000 // 30


class ScanNetFramesSource(FolderSource):
    name = "scannet-frames"
    description = "ScanNet .sens export (color/, depth/, pose/, intrinsic/)"

    @classmethod
    def detect(cls, path) -> bool:
        return path.is_dir() and all((path / d).is_dir() for d in ("color", "depth", "pose"))

    def revisits(self):
        numbers = sorted(int(p.stem) for p in (self.path / "pose").glob("*.txt")
                         if p.stem.isdigit())
        if not numbers:
            raise InputError(f"{self.path / 'pose'}: no N.txt pose files")
        files = []
        for n in numbers:
            color = self.path / "color" / f"{n}.jpg"
            if not color.is_file():
                color = self.path / "color" / f"{n}.png"
            files.append(FrameFiles(n * FRAME_NS, color, self.path / "depth" / f"{n}.png",
                                    read_pose_file(self.path / "pose" / f"{n}.txt")))
        width, height = image_size(files[0].depth)
        intrinsics = intrinsics_override(self.cfg, width, height)
        if intrinsics is None:
            k_path = self.path / "intrinsic" / "intrinsic_depth.txt"
            if not k_path.is_file():
                raise InputError(f"{k_path}: missing (the depth camera's intrinsics; or set "
                                 "source.intrinsics=fx,fy,cx,cy)")
            k = read_matrix(k_path)
            intrinsics = Intrinsics(width, height, k[0, 0], k[1, 1], k[0, 2], k[1, 2])
        return self.frame_revisit(files, intrinsics, 1000.0)
