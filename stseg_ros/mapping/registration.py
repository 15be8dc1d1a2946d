"""Register a revisit's scan to the persistent map, and know when that failed.

Coarse: FPFH features on a voxelised copy and RANSAC over feature matches
(Open3D), which needs no initial guess - each revisit starts in its own odom
frame. Fine: point-to-plane ICP at three scales with a Tukey robust kernel, so
the minority of points on objects that moved since get down-weighted instead
of pulling the result. Rooms are often nearly symmetric, so the result is also
refined turned by 90, 180 and 270 degrees about the vertical, and the best fit
wins; when another turn fits almost as well the revisit is ambiguous and
reported as a failure. A ground robot's revisit differs from the map by a
rotation about the vertical and a translation in the floor plane, so a result
that tilts or lifts the scan is a failure, and so is one where too little of
the scan's vertical surfaces (walls, furniture sides; floors fit any room)
lies on the map.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from stseg_ros.core.pointcloud import planar_pose, rotation_angle_deg


@dataclass(frozen=True)
class RegistrationConfig:
    voxel: float = 0.05               # m, fine ICP resolution (coarse steps use multiples)
    coarse_voxel: float = 0.12        # m, FPFH and RANSAC resolution
    ransac_iterations: int = 100_000
    ransac_attempts: int = 3          # independent RANSAC runs, each refined in 4 turns
    ransac_confidence: float = 0.9995
    min_fitness: float = 0.45         # share of overlapping vertical surfaces within voxel/2
    min_overlap: float = 0.2          # share of vertical surfaces with map near them
    overlap_distance: float = 0.25    # m
    min_margin: float = 0.02          # fitness lead over the best different alternative
    max_rmse: float = 0.02            # m, inlier RMSE of those surfaces (limit voxel/2)
    max_tilt_deg: float = 3.0         # roll/pitch a floor-bound robot cannot have
    max_lift: float = 0.15            # m, vertical offset likewise
    seed: int = 0


@dataclass
class RegistrationResult:
    """``map_from_scan`` takes scan points into the map frame when ``success``."""

    map_from_scan: np.ndarray
    success: bool
    fitness: float
    inlier_rmse: float
    reason: str
    seconds: float


def _cloud(xyz: np.ndarray, voxel: float) -> o3d.geometry.PointCloud:
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, dtype=np.float64)))
    pc = pc.voxel_down_sample(voxel)
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=voxel * 2.5, max_nn=30))
    return pc


def _fpfh(pc: o3d.geometry.PointCloud, voxel: float):
    return o3d.pipelines.registration.compute_fpfh_feature(
        pc, o3d.geometry.KDTreeSearchParamHybrid(radius=voxel * 5, max_nn=100))


def tilt_and_lift(transform: np.ndarray) -> tuple[float, float]:
    """Angle (deg) between the transformed and the true vertical, and the z offset."""
    cos = float(np.clip(transform[2, 2], -1.0, 1.0))
    return math.degrees(math.acos(cos)), abs(float(transform[2, 3]))


def _turned(transform: np.ndarray, quarter_turns: int, centre: np.ndarray) -> np.ndarray:
    """``transform`` followed by a turn about the vertical through the moved ``centre``."""
    if quarter_turns == 0:
        return np.asarray(transform)
    moved = centre @ transform[:3, :3].T + transform[:3, 3]
    turn = planar_pose(0.0, 0.0, quarter_turns * math.pi / 2)
    turn[:2, 3] = moved[:2] - turn[:2, :2] @ moved[:2]
    return turn @ transform


class _Pyramid:
    """The voxelised clouds (with normals) that every candidate's ICP reuses."""

    def __init__(self, xyz: np.ndarray, cfg: RegistrationConfig) -> None:
        self.coarse = _cloud(xyz, cfg.coarse_voxel)
        self.levels = [(v, _cloud(xyz, v)) for v in (cfg.voxel * 2, cfg.voxel, cfg.voxel / 2)]


def _icp(scan: _Pyramid, target: _Pyramid, transform: np.ndarray, levels: slice):
    """Point-to-plane ICP over some pyramid levels with a Tukey kernel."""
    reg = o3d.pipelines.registration
    for (voxel, s), (_, d) in zip(scan.levels[levels], target.levels[levels], strict=True):
        result = reg.registration_icp(
            s, d, voxel * 2, transform,
            reg.TransformationEstimationPointToPlane(reg.TukeyLoss(k=voxel * 2)),
            reg.ICPConvergenceCriteria(max_iteration=30))
        transform = result.transformation
    return result


def register_scan(scan_xyz: np.ndarray, map_xyz: np.ndarray,
                  cfg: RegistrationConfig = RegistrationConfig()) -> RegistrationResult:
    """Transform taking ``scan_xyz`` (a revisit, its odom frame) onto ``map_xyz``."""
    start = time.perf_counter()
    reg = o3d.pipelines.registration
    if len(scan_xyz) < 100 or len(map_xyz) < 100:
        return RegistrationResult(np.eye(4), False, 0.0, 0.0, "too few points",
                                  time.perf_counter() - start)
    scan, target = _Pyramid(scan_xyz, cfg), _Pyramid(map_xyz, cfg)
    features = (_fpfh(scan.coarse, cfg.coarse_voxel), _fpfh(target.coarse, cfg.coarse_voxel))
    centre = np.asarray(scan.coarse.get_center())
    candidates = []   # each RANSAC result and its quarter turns, after coarse ICP
    for attempt in range(cfg.ransac_attempts):
        o3d.utility.random.seed(cfg.seed + attempt)
        # the mutual filter may fall back to all matches; that is fine, and not news
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            coarse = reg.registration_ransac_based_on_feature_matching(
                scan.coarse, target.coarse, *features, True, cfg.coarse_voxel * 1.5,
                reg.TransformationEstimationPointToPoint(False), 3,
                [reg.CorrespondenceCheckerBasedOnEdgeLength(0.9),
                 reg.CorrespondenceCheckerBasedOnDistance(cfg.coarse_voxel * 1.5)],
                reg.RANSACConvergenceCriteria(cfg.ransac_iterations, cfg.ransac_confidence))
        candidates += [_icp(scan, target, _turned(coarse.transformation, turn, centre),
                            slice(0, 1)) for turn in range(4)]
        best, margin = _best(candidates)
        if best.fitness >= 0.6 and margin >= 0.15:     # clear winner: no more attempts
            break
    best, margin = _best(candidates)
    transform = np.asarray(_icp(scan, target, best.transformation, slice(1, 3)).transformation)
    fitness, rmse, reason = _judge(scan, target, transform, cfg)
    if reason == "ok" and margin < cfg.min_margin:
        reason = (f"ambiguous: a different fit scores within {margin:.2f} of the best "
                  "(symmetric room?)")
    return RegistrationResult(transform, reason == "ok", fitness, rmse, reason,
                              time.perf_counter() - start)


def _judge(scan: _Pyramid, target: _Pyramid, transform: np.ndarray,
           cfg: RegistrationConfig) -> tuple[float, float, str]:
    """Fitness, inlier RMSE and the verdict on an alignment ("ok" or why not).

    Only vertical surfaces count (walls, furniture sides): floors fit any
    alignment that keeps the floor level. Of those scan points that have map
    within ``overlap_distance`` (the overlap; parts the map never saw do not
    count against the scan), fitness is the share within half a fine voxel.
    """
    reg = o3d.pipelines.registration
    (voxel, s), (_, d) = scan.levels[2], target.levels[2]
    upright = s.select_by_index(np.flatnonzero(np.abs(np.asarray(s.normals)[:, 2]) < 0.5))
    check = reg.evaluate_registration(upright, d, voxel, transform)
    near = reg.evaluate_registration(upright, d, cfg.overlap_distance, transform).fitness
    overlap, consistency = near, check.fitness / max(near, 1e-9)
    tilt, lift = tilt_and_lift(transform)
    reason = "ok"
    if overlap < cfg.min_overlap:
        reason = f"overlap {overlap:.2f} below {cfg.min_overlap}"
    elif consistency < cfg.min_fitness:
        reason = f"fitness {consistency:.2f} below {cfg.min_fitness}"
    elif check.inlier_rmse > cfg.max_rmse:
        reason = f"inlier RMSE {check.inlier_rmse:.3f} m above {cfg.max_rmse}"
    elif tilt > cfg.max_tilt_deg or lift > cfg.max_lift:
        reason = f"not a floor-plane motion (tilt {tilt:.1f} deg, lift {lift:.2f} m)"
    return float(consistency), float(check.inlier_rmse), reason


def assess_alignment(scan_xyz: np.ndarray, map_xyz: np.ndarray, map_from_scan: np.ndarray,
                     cfg: RegistrationConfig = RegistrationConfig()) -> tuple[float, float, str]:
    """The verdict ``register_scan`` would give a given alignment: (fitness, RMSE, reason)."""
    return _judge(_Pyramid(scan_xyz, cfg), _Pyramid(map_xyz, cfg), map_from_scan, cfg)


def _best(candidates) -> tuple:
    """The best-fitting candidate and its fitness lead over any clearly different one."""
    ranked = sorted(candidates, key=lambda f: (f.fitness, -f.inlier_rmse), reverse=True)
    best = ranked[0]
    rivals = [c.fitness for c in ranked[1:]
              if rotation_angle_deg(c.transformation, best.transformation) > 10.0
              or np.linalg.norm(c.transformation[:3, 3] - best.transformation[:3, 3]) > 0.5]
    return best, best.fitness - max(rivals, default=0.0)

