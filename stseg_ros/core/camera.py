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
