"""Undo a revisit's odometry drift by bending its scan onto the map.

Wheel odometry drifts slowly (a scale error and a yaw bias that grow with the
distance driven), so a scan fused from raw odometry is slightly bent: no
single rigid transform lays all of it on the map, and a tenth of a degree
at the far wall is enough for objects there to miss their stored points.
Over a few seconds the drift is negligible, so besides the revisit's TSDF a
sparse cloud is kept per *fragment* of consecutive frames
(``FragmentFusion``). Registration places the whole scan first;
``bend_onto_map`` then gives every fragment its own small planar correction
(x, y, yaw) by joint point-to-plane alignment to the map, tied fragment to
fragment by the odometry: a fragment that sees only one wall cannot slide
along it, because its neighbours hold it. Corrections are robust to objects
that moved (Huber weights, distance cut-off).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from stseg_ros.core.camera import backproject
from stseg_ros.core.fields import setting
from stseg_ros.core.pointcloud import transform_points, voxel_downsample, voxel_mean
from stseg_ros.mapping.frames import RgbdFrame
from stseg_ros.mapping.fusion import FusionConfig, TsdfFusion
from stseg_ros.mapping.geometric import estimate_normals
from stseg_ros.mapping.labels import LabelConfig, LabelVotes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DriftConfig:
    fragment_frames: int = setting(  # frames per fragment kept for drift correction (4 s at
        20, low=1)                   # 5 Hz)
    pixel_stride: int = setting(8, low=1)  # every 8th pixel of every 8th row feeds the fragments
    voxel: float = setting(0.05, above=0)  # m, resolution of the alignment
    distances: tuple[float, ...] = (0.15, 0.08, 0.05, 0.03, 0.03, 0.03)  # m, per iteration
    huber: float = setting(0.01, above=0)  # m, residuals beyond this are down-weighted
    point_sigma: float = setting(   # m, trust in one fragment's fit (per effective point)
        0.01, above=0)
    effective_points: float = setting(  # a fragment's fit counts as this many independent
        200.0, above=0)             # points
    step_sigma: tuple[float, float] = (0.01, 0.003)   # m and rad of drift between fragments
    max_correction: tuple[float, float] = (0.3, 0.05)  # m and rad: larger means a bad fit


@dataclass
class FusedScan:
    """A revisit's fused surface in its odom frame, with what drift correction needs.

    ``fragments`` are sparse clouds of consecutive frames (odom frame, in time
    order) from which the corrections are found; a one-piece scan has none.
    """

    xyz: np.ndarray                 # (N, 3) float32
    rgb: np.ndarray                 # (N, 3) uint8
    fragments: list[np.ndarray] = field(default_factory=list)
    camera_down: np.ndarray | None = None   # mean image-down direction of its cameras
    labels: np.ndarray | None = None        # (N,) the robot's 2D label per point (0: none)
    label_share: np.ndarray | None = None   # (N,) that label's share of its voxel's votes

    @classmethod
    def single(cls, xyz: np.ndarray, rgb: np.ndarray) -> FusedScan:
        """A scan without fragments (a fast-mode scan, a scan fused elsewhere)."""
        return cls(np.asarray(xyz, np.float32), np.asarray(rgb, np.uint8))

    @property
    def parts(self) -> int:
        return len(self.fragments)

    def transformed(self, transform: np.ndarray) -> FusedScan:
        """The same scan in another frame (``transform``: new_from_old)."""
        if np.allclose(transform, np.eye(4)):
            return self
        down = None if self.camera_down is None else transform[:3, :3] @ self.camera_down
        return FusedScan(transform_points(transform, self.xyz).astype(np.float32), self.rgb,
                         [transform_points(transform, f) for f in self.fragments], down,
                         self.labels, self.label_share)


class FragmentFusion:
    """Fuses every frame into the revisit's TSDF (``TsdfFusion``) and keeps, per
    ``fragment_frames`` frames, a sparse back-projected cloud for drift correction.

    The surface comes from one TSDF over all frames, which averages sensor
    noise far better than merging separately fused fragments would; the
    fragment clouds cost a strided back-projection per frame.
    """

    def __init__(self, fusion: FusionConfig | None = None,
                 drift: DriftConfig | None = None, labels: LabelConfig | None = None) -> None:
        self.fusion_cfg, self.cfg = fusion or FusionConfig(), drift or DriftConfig()
        self.tsdf = TsdfFusion(self.fusion_cfg)
        self.stats = self.tsdf.stats
        # the robot's 2D labels, when it sends them (labels.topic)
        self.labels = LabelVotes(labels) if labels is not None and labels.topic else None
        if self.labels is not None:
            self.stats.labels = self.labels.stats
        self._fragments: list[np.ndarray] = []
        self._current: list[np.ndarray] = []
        self._down = np.zeros(3)

    def integrate(self, frame: RgbdFrame) -> bool:
        """Fuse one frame (a frame that cannot be used is counted, not fused)."""
        if not self.tsdf.integrate(frame):
            return False
        xyz, _ = backproject(frame.depth, frame.intrinsics, frame.odom_from_camera,
                             self.cfg.pixel_stride, self.fusion_cfg.depth_max)
        self._current.append(xyz)
        if self.labels is not None:
            self.labels.add_view(frame.stamp_ns, frame.depth, frame.intrinsics,
                                 frame.odom_from_camera, self.fusion_cfg.depth_max)
        self._down += frame.odom_from_camera[:3, 1]       # the optical frame's y: image down
        if len(self._current) >= self.cfg.fragment_frames:
            self._close()
        return True

    def _close(self) -> None:
        if self._current:
            cloud = voxel_mean(np.concatenate(self._current), self.cfg.voxel)
            if len(cloud):
                self._fragments.append(cloud)
        self._current = []

    def add_labels(self, stamp_ns: int, labels: np.ndarray | None, reason: str = "") -> None:
        """A label image of the robot's 2D segmenter (ignored without labels.topic);
        None: one that could not be read, counted with ``reason``."""
        if self.labels is None:
            return
        if labels is None:
            self.labels.stats.refuse(reason)
        else:
            self.labels.add_labels(stamp_ns, labels)

    def scan(self) -> FusedScan:
        self._close()
        xyz, rgb = self.tsdf.scan()
        n = self.stats.integrated
        scan = FusedScan(xyz, rgb, self._fragments, self._down / n if n else None)
        if self.labels is not None:
            scan.labels, scan.label_share = self.labels.evidence(xyz)
        return scan


def _planar(params: np.ndarray) -> np.ndarray:
    """4x4 transform of planar parameters (tx, ty, yaw), turning about the origin."""
    c, s = np.cos(params[2]), np.sin(params[2])
    out = np.eye(4)
    out[:2, :2] = [[c, -s], [s, c]]
    out[:2, 3] = params[:2]
    return out


def bend_onto_map(scan: FusedScan, map_from_scan: np.ndarray, map_xyz: np.ndarray,
                  cfg: DriftConfig = DriftConfig()) -> np.ndarray:
    """Per fragment, the planar correction (tx, ty, yaw; map frame) that, after
    ``map_from_scan``, lays its points on the map; zeros when refused.

    Starts from the registration result and finds the corrections by
    Gauss-Newton over all fragments at once: point-to-plane residuals to the
    map for each fragment, and a penalty on the change of correction from one
    fragment to the next (what odometry drifts in one fragment's time).
    """
    parts = scan.parts
    if parts < 2 or len(map_xyz) == 0:
        return np.zeros((parts, 3))
    keep = voxel_downsample(map_xyz, cfg.voxel)
    target = map_xyz[keep].astype(np.float64)
    normals = estimate_normals(target, cfg.voxel * 2.5).astype(np.float64)
    tree = cKDTree(target)
    sources = [transform_points(map_from_scan, f) for f in scan.fragments]
    x = np.zeros((parts, 3))                       # current corrections
    step_w = np.diag([1 / cfg.step_sigma[0] ** 2] * 2 + [1 / cfg.step_sigma[1] ** 2])
    for distance in cfg.distances:
        big_h = np.zeros((parts * 3, parts * 3))
        big_g = np.zeros(parts * 3)
        for i, src in enumerate(sources):
            p = transform_points(_planar(x[i]), src)
            dist, idx = tree.query(p, distance_upper_bound=distance)
            ok = np.isfinite(dist)
            if ok.sum() < 10:
                continue
            p, q, n = p[ok], target[idx[ok]], normals[idx[ok]]
            r = np.einsum("ij,ij->i", n, p - q)
            jac = np.c_[n[:, 0], n[:, 1], n[:, 1] * p[:, 0] - n[:, 0] * p[:, 1]]
            w = np.minimum(1.0, cfg.huber / np.maximum(np.abs(r), 1e-9))
            scale = cfg.effective_points / len(r) / cfg.point_sigma ** 2
            big_h[3 * i:3 * i + 3, 3 * i:3 * i + 3] += scale * (jac.T * w) @ jac
            big_g[3 * i:3 * i + 3] -= scale * (jac.T * w) @ r
        for i in range(parts - 1):                 # odometry ties, on the total corrections
            a, b = slice(3 * i, 3 * i + 3), slice(3 * i + 3, 3 * i + 6)
            diff = x[i + 1] - x[i]
            big_h[a, a] += step_w
            big_h[b, b] += step_w
            big_h[a, b] -= step_w
            big_h[b, a] -= step_w
            big_g[a] += step_w @ diff
            big_g[b] -= step_w @ diff
        big_h += np.eye(parts * 3) * 1e-6          # keeps a fragment-free direction fixed
        x += np.linalg.solve(big_h, big_g).reshape(parts, 3)
    worst_shift = float(np.abs(x[:, :2]).max())
    worst_turn = float(np.abs(x[:, 2]).max())
    if worst_shift > cfg.max_correction[0] or worst_turn > cfg.max_correction[1]:
        log.warning("drift correction refused (%.2f m, %.2f deg): kept the rigid fit",
                    worst_shift, np.degrees(worst_turn))
        return np.zeros((parts, 3))
    log.info("drift correction over %d fragments: up to %.3f m and %.2f deg",
             parts, worst_shift, np.degrees(worst_turn))
    return x


def place(scan: FusedScan, map_from_scan: np.ndarray, corrections: np.ndarray,
          reach: float = 0.1) -> np.ndarray:
    """The scan's points in the map frame, each corrected by the mean correction of
    the fragments that saw it (those with a point within ``reach``).

    A surface seen at the start and again at the end of a loop was averaged
    by the TSDF; averaging the corrections moves it consistently instead of
    tearing it into the two fragments' versions.
    """
    xyz = transform_points(map_from_scan, scan.xyz.astype(np.float64))
    if scan.parts < 2 or not np.any(corrections):
        return xyz
    total, weight = np.zeros((len(xyz), 3)), np.zeros(len(xyz))
    nearest = np.full(len(xyz), np.inf)
    fallback = np.zeros((len(xyz), 3))
    for fragment, correction in zip(scan.fragments, corrections, strict=True):
        dist, _ = cKDTree(fragment).query(scan.xyz, distance_upper_bound=reach * 3)
        seen = dist < reach
        total[seen] += correction
        weight[seen] += 1.0
        closer = dist < nearest                     # points no fragment saw within reach
        nearest[closer], fallback[closer] = dist[closer], correction
    per_point = np.where(weight[:, None] > 0, total / np.maximum(weight, 1)[:, None], fallback)
    c, s = np.cos(per_point[:, 2]), np.sin(per_point[:, 2])
    out = xyz.copy()
    out[:, 0] = c * xyz[:, 0] - s * xyz[:, 1] + per_point[:, 0]
    out[:, 1] = s * xyz[:, 0] + c * xyz[:, 1] + per_point[:, 1]
    return out


def corrected(map_from_scan: np.ndarray, correction: np.ndarray) -> np.ndarray:
    """The 4x4 transform of one fragment: its correction after ``map_from_scan``."""
    return _planar(correction) @ map_from_scan
