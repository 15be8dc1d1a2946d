"""Level a revisit's scan: z up, as the mapper's floor-bound model assumes.

Robot odometry frames are z up (REP 103), but many datasets are not:
7-Scenes and TUM give poses in the first camera's frame (y down), a SLAM
map may be tilted. Registration only allows floor-plane motion and the
segmenters look for floors and walls, so a scan in such a frame would map as
a frontal view. The up direction is found from two cues:

- the cameras: a hand-held or robot camera is held roughly upright, so the
  mean image-down direction of the fused cameras points roughly down;
- the dominant plane directions of the scan: the floor normal (and the
  ceiling's) is one of the few directions that many surface normals share.

Up is the dominant plane direction nearest the cue (the cameras' where
there are frames, else the configured axis, else the input's own z), so a
camera cue accurate to 30 degrees still levels to the floor's precision.
A scan whose up lies within ``tolerance_deg`` of +z is left exactly as it
is; any other is turned so that up is +z and shifted so its floor (the
lowest large horizontal plane) is at z = 0, since such frames start at an
arbitrary height (a first camera's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from stseg_ros.core.fields import setting
from stseg_ros.core.pointcloud import voxel_downsample
from stseg_ros.mapping.geometric import estimate_normals

AXES = {"x": (1, 0, 0), "y": (0, 1, 0), "z": (0, 0, 1),
        "-x": (-1, 0, 0), "-y": (0, -1, 0), "-z": (0, 0, -1)}


@dataclass(frozen=True)
class LevellingConfig:
    up: str = setting(           # up axis of the odom frame: auto (the floor normal nearest
        "auto",                  # the cameras' image-down direction), none (the frame as it
        choices=("auto", "none", *AXES))  # is), or the axis (7-Scenes-like y-down worlds: -y)
    tolerance_deg: float = setting(  # deg, an up this close to +z leaves the scan untouched
        0.5, low=0, high=180)
    snap_deg: float = setting(   # deg, the floor normal taken must lie this close to the cue
        35.0, low=0, high=180)   # (cameras or axis)
    voxel: float = setting(0.05, above=0)  # m, resolution of the normal statistics
    normal_radius: float = setting(0.12, above=0)  # m, radius of the normal estimation

    def __post_init__(self) -> None:
        if self.up not in ("auto", "none", *AXES):
            raise ValueError(f"levelling.up {self.up!r}: expected auto, none or one of "
                             f"{', '.join(AXES)}")


@dataclass
class Levelling:
    """``levelled_from_input`` takes the scan into its z-up frame; ``note`` says
    how up was chosen (printed with each revisit)."""

    levelled_from_input: np.ndarray
    up: np.ndarray               # unit up direction in the input frame
    note: str

    @property
    def changed(self) -> bool:
        return not np.allclose(self.levelled_from_input, np.eye(4))


def dominant_directions(normals: np.ndarray, count: int = 3, angle_deg: float = 10.0,
                        seed: int = 0) -> list[tuple[np.ndarray, int]]:
    """Up to ``count`` axes (unit, sign free) that many normals lie along, with
    how many; each refined as the principal direction of its normals."""
    rng = np.random.default_rng(seed)
    cos = math.cos(math.radians(angle_deg))
    left = normals[np.isfinite(normals).all(axis=1)]
    out = []
    for _ in range(count):
        if len(left) < 20:
            break
        trial = left[rng.choice(len(left), min(300, len(left)), replace=False)]
        votes = (np.abs(trial @ left.T) > cos).sum(axis=1)
        axis = trial[int(np.argmax(votes))]
        for _ in range(3):                    # refine: principal direction of the inliers
            near = left[np.abs(left @ axis) > cos]
            axis = np.linalg.eigh(near.T @ near)[1][:, -1]
        inliers = np.abs(left @ axis) > cos
        out.append((axis / np.linalg.norm(axis), int(inliers.sum())))
        left = left[~inliers]
    return out


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector ``a`` onto unit vector ``b``."""
    v, c = np.cross(a, b), float(np.dot(a, b))
    if c < -1 + 1e-9:                         # opposite: half a turn about any normal
        axis = np.cross(a, [1.0, 0, 0] if abs(a[0]) < 0.9 else [0, 1.0, 0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k / (1 + c)


def floor_height(z: np.ndarray, bin_size: float = 0.02) -> float:
    """Height of the lowest large horizontal layer among points of horizontal
    surfaces (a fifth of the largest layer's points at least); the floor."""
    if len(z) == 0:
        return 0.0
    edges = np.arange(z.min(), z.max() + 2 * bin_size, bin_size)
    counts, edges = np.histogram(z, edges)
    big = np.flatnonzero(counts >= max(0.2 * counts.max(), 0.01 * len(z)))
    k = int(big[0])
    layer = z[(z >= edges[k]) & (z < edges[k + 1])]
    return float(np.median(layer))


def level_scan(xyz: np.ndarray, cfg: LevellingConfig = LevellingConfig(),
               camera_down: np.ndarray | None = None) -> Levelling:
    """How to level ``xyz`` (see the module docstring); ``camera_down``: the
    mean image-down direction of the cameras that saw it, if known."""
    if cfg.up == "none":
        return Levelling(np.eye(4), np.array([0, 0, 1.0]), "frame taken as it is (up: none)")
    keep = voxel_downsample(xyz, cfg.voxel)
    sample = np.asarray(xyz, np.float64)[keep]
    normals = estimate_normals(sample, cfg.normal_radius).astype(np.float64)
    if cfg.up in AXES:
        cue, cue_name = np.array(AXES[cfg.up], float), f"levelling.up={cfg.up}"
    elif camera_down is not None and np.linalg.norm(camera_down) > 0.3:
        cue, cue_name = -camera_down / np.linalg.norm(camera_down), "the cameras"
    else:
        cue, cue_name = np.array([0, 0, 1.0]), "the input's z"
    axes = dominant_directions(normals)
    best = max(axes, key=lambda a: abs(float(a[0] @ cue)), default=None)
    if best is not None and abs(float(best[0] @ cue)) >= math.cos(math.radians(cfg.snap_deg)):
        up = best[0] * np.sign(best[0] @ cue)
        how = f"floor normal nearest {cue_name}"
    else:
        up = cue
        how = f"{cue_name} (no floor plane found within {cfg.snap_deg:.0f} deg)"
    tilt = math.degrees(math.acos(float(np.clip(up[2], -1, 1))))
    if tilt <= cfg.tolerance_deg:
        return Levelling(np.eye(4), up, f"z up as given ({how}, {tilt:.1f} deg from z)")
    rotation = rotation_between(up, np.array([0, 0, 1.0]))
    z = sample @ rotation[2]
    horizontal = np.abs(normals @ up) > math.cos(math.radians(10.0))
    floor = floor_height(z[horizontal] if horizontal.sum() > 50 else z)
    out = np.eye(4)
    out[:3, :3] = rotation
    out[2, 3] = -floor
    axis = min(AXES, key=lambda a: float(np.linalg.norm(np.array(AXES[a]) - up)))
    return Levelling(out, up, f"levelled: up is {axis} ({how}, {tilt:.1f} deg from z), "
                              f"floor moved to z = 0 (was {floor:+.2f} m)")
