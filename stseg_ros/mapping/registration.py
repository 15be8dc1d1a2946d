"""Register a revisit's scan to the persistent map, and know when that failed.

Coarse: FPFH features on a voxelised copy and RANSAC over feature matches
(Open3D), which needs no initial guess - each revisit starts in its own odom
frame. Fine: point-to-plane ICP at three scales with a Tukey robust kernel, so
the minority of points on objects that moved since get down-weighted instead
of pulling the result. Rooms are often nearly symmetric, so the result is also
refined turned by 90, 180 and 270 degrees about the vertical, and the best fit
wins; when another turn fits almost as well the revisit is ambiguous and
reported as a failure. Scans arrive levelled (``gravity.py``), so a revisit
differs from the map by a turn about the vertical and a shift: the coarse
refinements move only so, and only the finest step may tilt a little (two
reconstructions are rarely level to a fraction of a degree). A result that
tilts or lifts the scan is a failure, and so is one where too little of the
scan's vertical surfaces (walls, furniture sides; floors fit any room) has
map near it, or too little of that lies on the map's surfaces.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import numpy as np
import open3d as o3d
from scipy.spatial import cKDTree

from stseg_ros.core.fields import setting
from stseg_ros.core.pointcloud import planar_pose, rotation_angle_deg, transform_points
from stseg_ros.mapping.gravity import LevellingConfig, level_scan


@dataclass(frozen=True)
class RegistrationConfig:
    voxel: float = setting(0.05, above=0)  # m, fine ICP resolution (coarse steps use multiples)
    coarse_voxel: float = setting(0.12, above=0)  # m, FPFH and RANSAC resolution
    ransac_iterations: int = setting(100_000, low=1)  # RANSAC iterations per attempt
    ransac_attempts: int = setting(3, low=1)  # independent RANSAC runs, each refined in 4 turns
    ransac_confidence: float = setting(   # RANSAC stops once this sure of its best model
        0.9995, low=0, high=1)
    # the gate, calibrated on real ScanNet rescans and generated revisits (README,
    # "Registration"): right alignments scored fitness >= 0.51, overlap >= 0.71,
    # margin >= 0.045; wrong ones were each below at least one of these limits
    min_fitness: float = setting(         # share of overlapping vertical surfaces on the
        0.4, low=0, high=1)               # map's
    min_overlap: float = setting(         # share of vertical surfaces with map near them
        0.5, low=0, high=1)
    overlap_distance: float = setting(0.25, above=0)  # m, map this close counts as near
    min_margin: float = setting(          # coarse fitness lead over the best different
        0.03, low=0, high=1)              # alternative
    max_rmse: float = setting(            # m, RMSE of the fitting surfaces' distances
        0.02, above=0)                    # (< voxel/2)
    max_tilt_deg: float = setting(3.0, low=0)  # deg, roll/pitch a floor-bound robot cannot have
    max_lift: float = setting(0.15, low=0)  # m, vertical offset likewise
    seed: int = setting(0, low=0)         # RANSAC random seed (attempt k uses seed + k)
    structure_agreement: float = setting(  # share of the revisits that looked at a place
        0.3, low=0, high=1)               # that must have seen a structure cell there for
                                          # revisits to register to it (and two); 0: every
                                          # cell any registered revisit saw


@dataclass
class RegistrationResult:
    """``map_from_scan`` takes scan points into the map frame when ``success``;
    the measures it was judged by (``_judge``) come with it."""

    map_from_scan: np.ndarray
    success: bool
    fitness: float
    inlier_rmse: float
    reason: str
    seconds: float
    overlap: float = 0.0
    margin: float = 0.0            # fitness lead of the best coarse fit over any other


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


def _turned(transform: np.ndarray, quarter_turns: int, pivot: np.ndarray) -> np.ndarray:
    """``transform`` followed by a turn about the vertical through ``pivot`` (map frame)."""
    if quarter_turns == 0:
        return np.asarray(transform)
    turn = planar_pose(0.0, 0.0, quarter_turns * math.pi / 2)
    turn[:2, 3] = pivot[:2] - turn[:2, :2] @ pivot[:2]
    return turn @ transform


class _Pyramid:
    """The voxelised clouds (with normals) that every candidate's ICP reuses."""

    def __init__(self, xyz: np.ndarray, cfg: RegistrationConfig) -> None:
        self.coarse = _cloud(xyz, cfg.coarse_voxel)
        self.levels = [(v, _cloud(xyz, v)) for v in (cfg.voxel * 2, cfg.voxel, cfg.voxel / 2)]

    @functools.cached_property
    def coarse_tree(self) -> cKDTree:
        return cKDTree(np.asarray(self.coarse.points))

    @functools.cached_property
    def trees(self) -> list[tuple[float, o3d.geometry.PointCloud, cKDTree]]:
        """Each level with a KD-tree of its points (built once, for the map only)."""
        return [(v, pc, cKDTree(np.asarray(pc.points))) for v, pc in self.levels]


@dataclass
class _Fit:
    """An ICP result: the transform, the share of scan points with a match, their RMSE."""

    transformation: np.ndarray
    fitness: float
    inlier_rmse: float


def yaw_only(transform: np.ndarray) -> np.ndarray:
    """The nearest floor-plane motion: the rotation's turn about z, translation kept."""
    out = np.eye(4)
    yaw = math.atan2(transform[1, 0] - transform[0, 1], transform[0, 0] + transform[1, 1])
    out[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    out[:3, 3] = transform[:3, 3]
    return out


def _icp_floor(source: o3d.geometry.PointCloud, target: o3d.geometry.PointCloud,
               tree: cKDTree, voxel: float, transform: np.ndarray,
               iterations: int = 30) -> _Fit:
    """Point-to-plane ICP over floor-plane motions only (a turn about z and a 3D
    shift), Tukey-weighted: levelled scans differ by nothing else, and leaving
    out roll and pitch keeps a partial scan from tilting into a wrong fit."""
    src = np.asarray(source.points)
    dst, normals = np.asarray(target.points), np.asarray(target.normals)
    limit, k = voxel * 2, voxel * 2
    transform = yaw_only(transform)
    for _ in range(iterations):
        moved = src @ transform[:3, :3].T + transform[:3, 3]
        dist, idx = tree.query(moved, distance_upper_bound=limit)
        hit = np.isfinite(dist)
        if hit.sum() < 10:
            break
        p, n = moved[hit], normals[idx[hit]]
        r = np.einsum("ij,ij->i", p - dst[idx[hit]], n)
        w = np.where(np.abs(r) < k, (1 - (r / k) ** 2) ** 2, 0.0)
        jac = np.column_stack([n[:, 1] * p[:, 0] - n[:, 0] * p[:, 1], n])
        h = jac.T @ (jac * w[:, None]) + np.eye(4) * 1e-9
        step = -np.linalg.solve(h, jac.T @ (w * r))
        c, s_ = math.cos(step[0]), math.sin(step[0])
        delta = np.eye(4)
        delta[:2, :2] = [[c, -s_], [s_, c]]
        delta[:3, 3] = step[1:]
        transform = delta @ transform
        if abs(step[0]) < 1e-5 and np.linalg.norm(step[1:]) < 1e-5:
            break
    moved = src @ transform[:3, :3].T + transform[:3, 3]
    dist, _ = tree.query(moved, distance_upper_bound=limit)
    inliers = dist[np.isfinite(dist)]
    return _Fit(transform, len(inliers) / max(len(src), 1),
                float(np.sqrt(np.mean(inliers ** 2))) if len(inliers) else 0.0)


def _pull(scan: _Pyramid, target: _Pyramid, transform: np.ndarray) -> np.ndarray:
    """A coarse fit drawn into its basin from up to half a metre away (floor-plane
    ICP on the coarse clouds with a 0.5 m reach): a turned fit's pivot is only
    roughly the room's centre."""
    return _icp_floor(scan.coarse, target.coarse, target.coarse_tree, 0.25, transform,
                      iterations=15).transformation


def _icp(scan: _Pyramid, target: _Pyramid, transform: np.ndarray, levels: slice) -> _Fit:
    """Floor-plane ICP over some pyramid levels, coarse to fine."""
    result = _Fit(transform, 0.0, 0.0)
    for (voxel, s), (_, d, tree) in zip(scan.levels[levels], target.trees[levels], strict=True):
        result = _icp_floor(s, d, tree, voxel, result.transformation)
    return result


def _icp_full(scan: _Pyramid, target: _Pyramid, transform: np.ndarray) -> np.ndarray:
    """Point-to-plane ICP in all six degrees of freedom on the finest level
    (Tukey kernel): two reconstructions of one room are rarely level to the
    same fraction of a degree, and the tilt check catches what goes wrong."""
    reg = o3d.pipelines.registration
    (voxel, s), (_, d) = scan.levels[-1], target.levels[-1]
    return np.asarray(reg.registration_icp(
        s, d, voxel * 2, transform,
        reg.TransformationEstimationPointToPlane(reg.TukeyLoss(k=voxel * 2)),
        reg.ICPConvergenceCriteria(max_iteration=30)).transformation)


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
    map_centre = np.asarray(target.coarse.get_center())
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
        # a symmetric room's wrong fit is the right one turned about the room's
        # centre, which the map's centre is nearer to than a partial scan's is
        moved = centre @ coarse.transformation[:3, :3].T + coarse.transformation[:3, 3]
        candidates += [_icp(scan, target, _pull(scan, target, _turned(
                                coarse.transformation, turn, pivot)), slice(0, 1))
                       for turn, pivot in [(0, moved)] + [(t, c) for t in (1, 2, 3)
                                                          for c in (moved, map_centre)]]
        best, margin = _best(candidates)
        if best.fitness >= 0.6 and margin >= 0.15:     # clear winner: no more attempts
            break
    transform, verdict, margin = _finals(scan, target, candidates, cfg)
    reason = verdict.reason
    if reason == "ok" and margin < cfg.min_margin:
        reason = (f"ambiguous: a different fit scores within {margin:.2f} of the best "
                  "(symmetric room?)")
    return RegistrationResult(transform, reason == "ok", verdict.fitness, verdict.rmse, reason,
                              time.perf_counter() - start, verdict.overlap, float(margin))


@dataclass
class Verdict:
    """The measures an alignment is judged by, and the verdict ("ok" or why not)."""

    fitness: float
    rmse: float
    overlap: float
    reason: str


def register_levelled(scan_xyz: np.ndarray, map_xyz: np.ndarray,
                      cfg: RegistrationConfig = RegistrationConfig(),
                      levelling: LevellingConfig | None = None) -> RegistrationResult:
    """``register_scan`` for two scans in frames of their own, not necessarily
    level (imported rescans): both are levelled as the mapper levels revisits,
    and ``map_from_scan`` takes the scan's own frame into the map's own frame."""
    levelling = levelling or LevellingConfig()
    scan_level = level_scan(scan_xyz, levelling).levelled_from_input
    map_level = level_scan(map_xyz, levelling).levelled_from_input
    result = register_scan(transform_points(scan_level, scan_xyz),
                           transform_points(map_level, map_xyz), cfg)
    result.map_from_scan = np.linalg.inv(map_level) @ result.map_from_scan @ scan_level
    return result


def _judge(scan: _Pyramid, target: _Pyramid, transform: np.ndarray,
           cfg: RegistrationConfig) -> Verdict:
    """Judge an alignment on the scan's vertical surfaces (walls, furniture
    sides): floors fit any alignment that keeps the floor level.

    Overlap is the share of them with map within ``overlap_distance``; of
    those (parts the map never saw do not count against the scan), fitness is
    the share lying within half a fine voxel of the map's surface, measured
    along the map's normal. Measuring to the surface rather than to the
    nearest map point makes it independent of how densely either cloud
    samples its surfaces: a mesh's vertices or a random subsample of a real
    scan lie centimetres apart even where the surfaces coincide.
    """
    (voxel, s), (_, d, tree) = scan.levels[-1], target.trees[-1]
    normals = np.asarray(s.normals)
    upright = np.abs(normals[:, 2]) < 0.5
    points = np.asarray(s.points)[upright] @ transform[:3, :3].T + transform[:3, 3]
    dist, idx = tree.query(points, distance_upper_bound=cfg.overlap_distance)
    near = np.isfinite(dist)
    plane = np.abs(np.einsum("ij,ij->i", points[near] - np.asarray(d.points)[idx[near]],
                             np.asarray(d.normals)[idx[near]]))
    inliers = plane[plane < voxel]
    overlap = float(near.mean()) if len(near) else 0.0
    fitness = len(inliers) / max(int(near.sum()), 1)
    rmse = float(np.sqrt(np.mean(inliers ** 2))) if len(inliers) else 0.0
    tilt, lift = tilt_and_lift(transform)
    reason = "ok"
    if overlap < cfg.min_overlap:
        reason = f"overlap {overlap:.2f} below {cfg.min_overlap}"
    elif fitness < cfg.min_fitness:
        reason = f"fitness {fitness:.2f} below {cfg.min_fitness}"
    elif rmse > cfg.max_rmse:
        reason = f"inlier RMSE {rmse:.3f} m above {cfg.max_rmse}"
    elif tilt > cfg.max_tilt_deg or lift > cfg.max_lift:
        reason = f"not a floor-plane motion (tilt {tilt:.1f} deg, lift {lift:.2f} m)"
    return Verdict(fitness, rmse, overlap, reason)


def assess_alignment(scan_xyz: np.ndarray, map_xyz: np.ndarray, map_from_scan: np.ndarray,
                     cfg: RegistrationConfig = RegistrationConfig()) -> Verdict:
    """The verdict ``register_scan`` would give a given alignment (margin aside)."""
    return _judge(_Pyramid(scan_xyz, cfg), _Pyramid(map_xyz, cfg), map_from_scan, cfg)


FINALISTS = 3          # clearly different coarse fits refined to the end...
FINAL_REACH = 0.15     # ...if their coarse fitness is within this of the best


def _finals(scan: _Pyramid, target: _Pyramid, candidates: list[_Fit],
            cfg: RegistrationConfig) -> tuple[np.ndarray, Verdict, float]:
    """Refine the best few clearly different coarse fits at the fine levels and
    keep the one whose vertical surfaces fit best (fitness x overlap, as
    ``_judge`` measures them); the margin is its lead over the next. At the
    coarse level a symmetric room's fit turned by 180 degrees can score above
    the right one, and only the fine levels tell them apart; a room that is
    symmetric at every level stays ambiguous."""
    ranked = sorted(candidates, key=lambda f: (f.fitness, -f.inlier_rmse), reverse=True)
    finalists: list[_Fit] = []
    for c in ranked:
        if c.fitness < ranked[0].fitness - FINAL_REACH or len(finalists) == FINALISTS:
            break
        if all(_different(c, f) for f in finalists):
            finalists.append(c)
    refined = []
    for f in finalists:
        transform = _icp(scan, target, f.transformation, slice(1, 2)).transformation
        transform = _icp_full(scan, target, transform)
        verdict = _judge(scan, target, transform, cfg)
        refined.append((verdict.fitness * verdict.overlap, transform, verdict))
    refined.sort(key=lambda r: r[0], reverse=True)
    _, transform, verdict = refined[0]
    if len(refined) > 1:
        return transform, verdict, float(refined[0][0] - refined[1][0])
    return transform, verdict, _best(candidates)[1]


def _different(a: _Fit, b: _Fit) -> bool:
    return (rotation_angle_deg(a.transformation, b.transformation) > 10.0
            or np.linalg.norm(a.transformation[:3, 3] - b.transformation[:3, 3]) > 0.5)


def _best(candidates) -> tuple:
    """The best-fitting candidate and its fitness lead over any clearly different one."""
    ranked = sorted(candidates, key=lambda f: (f.fitness, -f.inlier_rmse), reverse=True)
    best = ranked[0]
    rivals = [c.fitness for c in ranked[1:] if _different(c, best)]
    return best, best.fitness - max(rivals, default=0.0)

