"""Pinhole camera intrinsics, shared by the dataset renderer, bags and fusion."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WIDTH, HEIGHT = 640, 480      # the benchmark's RealSense/Kinect-like camera
FX = FY = 525.0


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def default(cls, scale: float = 1.0) -> Intrinsics:
        w, h = int(WIDTH * scale), int(HEIGHT * scale)
        return cls(w, h, FX * scale, FY * scale, (w - 1) / 2, (h - 1) / 2)

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])


def backproject(depth: np.ndarray, intr: Intrinsics, camera_to_world: np.ndarray,
                stride: int = 1, depth_max: float | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """World points of valid depth pixels and their flat pixel indices.

    Valid means positive (NaN and 0 are not), and below ``depth_max`` if given;
    only the sampled pixels are looked at, so raw depth needs no cleaning first.
    """
    v, u = np.mgrid[0:intr.height:stride, 0:intr.width:stride]
    z = depth[v, u]
    valid = z > 0
    if depth_max is not None:
        valid &= z < depth_max
    u, v, z = u[valid], v[valid], z[valid]
    cam = np.stack([(u - intr.cx) * z / intr.fx, (v - intr.cy) * z / intr.fy, z], -1)
    world = cam @ camera_to_world[:3, :3].T + camera_to_world[:3, 3]
    return world, v * intr.width + u
