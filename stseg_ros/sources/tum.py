"""TUM RGB-D sequences: ``rgb.txt`` and ``depth.txt`` (stamp and file per
line), ``groundtruth.txt`` (stamp tx ty tz qx qy qz qw: the colour camera's
optical centre in the motion-capture world), depth PNGs in 1/5000 m.

Colour and depth are paired as TUM's ``associate.py`` does (nearest stamps
within ``max_pair_gap_s``, each used once), and the pose is interpolated
from the ground truth at the colour stamp. Intrinsics are TUM's published
ones for the Freiburg camera named in the folder (freiburg1/2/3), else
the ROS default (525, 525, 319.5, 239.5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stseg_ros.core.camera import Intrinsics
from stseg_ros.ingest.tf_buffer import TfBuffer
from stseg_ros.sources.base import InputError
from stseg_ros.sources.folder import FolderSource, FrameFiles, image_size, intrinsics_override

DEPTH_SCALE = 5000.0
CAMERAS = {"freiburg1": (517.3, 516.5, 318.6, 255.3), "freiburg2": (520.9, 521.0, 325.1, 249.7),
           "freiburg3": (535.4, 539.2, 320.1, 247.6)}
DEFAULT_CAMERA = (525.0, 525.0, 319.5, 239.5)


def read_list(path: Path, columns: int) -> list[tuple[float, list[str]]]:
    """A TUM list file: '#' comments, then 'stamp value...' per line."""
    if not path.is_file():
        raise InputError(f"{path}: missing")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        try:
            if len(parts) < columns + 1:
                raise ValueError(f"{len(parts) - 1} values, expected {columns}")
            rows.append((float(parts[0]), parts[1:columns + 1]))
        except ValueError as err:
            raise InputError(f"{path}:{number}: {err}") from None
    return rows


def associate(first: list[float], second: list[float], max_gap: float) -> list[tuple[int, int]]:
    """Index pairs of nearest stamps within ``max_gap``, closest pairs first, each
    index used once (TUM's associate.py)."""
    b = np.asarray(second)
    if not len(first) or not len(b):
        return []
    candidates = []
    for i, t in enumerate(first):
        k = int(np.searchsorted(b, t))
        for j in (k - 1, k):
            if 0 <= j < len(b) and abs(b[j] - t) <= max_gap:
                candidates.append((abs(b[j] - t), i, j))
    pairs, used_a, used_b = [], set(), set()
    for _, i, j in sorted(candidates):
        if i not in used_a and j not in used_b:
            pairs.append((i, j))
            used_a.add(i)
            used_b.add(j)
    return sorted(pairs)


class TumSource(FolderSource):
    name = "tum"
    description = "TUM RGB-D sequence (rgb.txt, depth.txt, groundtruth.txt)"

    @classmethod
    def detect(cls, path) -> bool:
        return path.is_dir() and (path / "rgb.txt").is_file() and (path / "depth.txt").is_file()

    def _poses(self) -> TfBuffer:
        poses = TfBuffer(cache_s=1e9, jump_back_s=1e9)
        for stamp, v in read_list(self.path / "groundtruth.txt", 7):
            try:
                poses.add("world", "camera", int(stamp * 1e9), [float(x) for x in v[:3]],
                          [float(x) for x in v[3:]])
            except ValueError as err:
                raise InputError(f"{self.path / 'groundtruth.txt'}: {err}") from None
        return poses

    def revisits(self):
        colour = read_list(self.path / "rgb.txt", 1)
        depth = read_list(self.path / "depth.txt", 1)
        colour.sort(key=lambda r: r[0])
        depth.sort(key=lambda r: r[0])
        poses = self._poses()
        gap_ns = int(self.cfg.max_pose_gap_s * 1e9)
        files = []
        for i, j in associate([t for t, _ in colour], [t for t, _ in depth],
                              self.cfg.max_pair_gap_s):
            stamp = int(colour[i][0] * 1e9)
            files.append(FrameFiles(stamp, self.path / colour[i][1][0], self.path / depth[j][1][0],
                                    poses.lookup("world", "camera", stamp, gap_ns)))
        if not files:
            raise InputError(f"{self.path}: no colour and depth images within "
                             f"{self.cfg.max_pair_gap_s} s of each other")
        width, height = image_size(files[0].depth)
        intrinsics = intrinsics_override(self.cfg, width, height)
        if intrinsics is None:
            camera = next((k for name, k in CAMERAS.items() if name in str(self.path.resolve())),
                          DEFAULT_CAMERA)
            intrinsics = Intrinsics(width, height, *camera)
        return self.frame_revisit(files, intrinsics, DEPTH_SCALE)
