"""Non-learned segmentation of one scan: structure, object clusters, cluster features.

The scan is in the map frame, z up, floor at z = 0 (a ground robot's odom and
map frames sit on the floor). Floor and ceiling are the horizontal surfaces at
the bottom and top; walls are large vertical planes found by RANSAC; what is
left is clustered into objects by Euclidean proximity (DBSCAN). Each cluster
gets a fixed-length feature vector for the classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d

from stseg_ros.core.classes import class_id

WALL, FLOOR, CEILING = class_id("wall"), class_id("floor"), class_id("ceiling")


@dataclass(frozen=True)
class GeometricConfig:
    normal_radius: float = 0.08     # m
    floor_height: float = 0.04      # m above z = 0 still counted as floor
    ceiling_band: float = 0.08      # m below the top still counted as ceiling
    wall_distance: float = 0.04     # m from a wall plane
    wall_min_height: float = 1.5    # m a plane must span vertically to be a wall
    wall_min_width: float = 0.8     # m it must span horizontally
    max_walls: int = 16
    cluster_eps: float = 0.05       # m, DBSCAN neighbourhood
    cluster_min_points: int = 8
    fragment_points: int = 400      # clusters smaller than this join a neighbour...
    fragment_reach: float = 0.15    # m ...whose points come this close
    min_object_points: int = 60


def estimate_normals(xyz: np.ndarray, radius: float) -> np.ndarray:
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz.astype(np.float64)))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=24))
    return np.asarray(pc.normals, dtype=np.float32)


def split_structure(xyz: np.ndarray, normals: np.ndarray,
                    cfg: GeometricConfig = GeometricConfig()) -> np.ndarray:
    """Per point: FLOOR, CEILING, WALL or 0 (object candidates)."""
    labels = np.zeros(len(xyz), dtype=np.int32)
    if len(xyz) == 0:
        return labels
    up = np.abs(normals[:, 2])
    z = xyz[:, 2]
    labels[(z < cfg.floor_height) & (up > 0.7)] = FLOOR
    top = np.percentile(z, 99.5)
    if top > 2.0:                                   # a ceiling was seen at all
        labels[(z > top - cfg.ceiling_band) & (up > 0.7)] = CEILING
    vertical = np.flatnonzero((labels == 0) & (up < 0.3))
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[vertical].astype(np.float64)))
    remaining = np.arange(len(vertical))
    o3d.utility.random.seed(0)                      # the same walls for the same scan
    for _ in range(cfg.max_walls):
        if len(remaining) < 200:
            break
        sub = pc.select_by_index(remaining)
        plane, inliers = sub.segment_plane(cfg.wall_distance, 3, 300)
        if len(inliers) < 200:
            break
        pts = xyz[vertical[remaining[inliers]]]
        normal = np.array(plane[:3])
        along = np.cross(normal, (0, 0, 1.0))
        along /= max(np.linalg.norm(along), 1e-9)
        width = np.ptp(pts @ along)
        height = np.ptp(pts[:, 2])
        if abs(normal[2]) < 0.2 and height > cfg.wall_min_height and width > cfg.wall_min_width:
            # label every non-structure point near the plane, not only vertical ones
            near = np.abs(xyz @ normal + plane[3]) < cfg.wall_distance
            span = xyz @ along
            lo, hi = np.percentile(pts @ along, [0.5, 99.5])
            labels[near & (labels == 0) & (span > lo - 0.05) & (span < hi + 0.05)] = WALL
        remaining = np.delete(remaining, inliers)
    return labels


def cluster_objects(xyz: np.ndarray, candidates: np.ndarray,
                    cfg: GeometricConfig = GeometricConfig()) -> np.ndarray:
    """Per point: cluster id (1, 2, ...) for object candidates, 0 elsewhere and for
    clusters smaller than ``min_object_points``."""
    out = np.zeros(len(xyz), dtype=np.int32)
    idx = np.flatnonzero(candidates)
    if len(idx) == 0:
        return out
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[idx].astype(np.float64)))
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        labels = np.asarray(pc.cluster_dbscan(cfg.cluster_eps, cfg.cluster_min_points))
    labels = _merge_fragments(xyz[idx], labels, cfg)
    next_id = 1
    for lab in np.unique(labels[labels >= 0]):
        members = idx[labels == lab]
        if len(members) >= cfg.min_object_points:
            out[members] = next_id
            next_id += 1
    return out


def _merge_fragments(xyz: np.ndarray, labels: np.ndarray, cfg: GeometricConfig) -> np.ndarray:
    """Join small clusters (a lamp's shade, a shelf board seen edge-on) to the nearest
    larger cluster within ``fragment_reach``, smallest first."""
    from scipy.spatial import cKDTree

    labels = labels.copy()
    ids, sizes = np.unique(labels[labels >= 0], return_counts=True)
    for lab in ids[np.argsort(sizes)]:
        members = labels == lab
        n = int(members.sum())
        if n == 0 or n >= cfg.fragment_points:
            continue
        others = np.flatnonzero((labels >= 0) & ~members)
        if len(others) == 0:
            continue
        dist, nearest = cKDTree(xyz[others]).query(xyz[members],
                                                   distance_upper_bound=cfg.fragment_reach)
        hit = np.isfinite(dist)
        if hit.any():
            target = labels[others[nearest[hit]]]
            labels[members] = np.bincount(target).argmax()
    return labels


FEATURE_NAMES = (
    "length", "width", "height", "z_min", "z_max", "z_mean", "footprint", "log_points",
    "horizontal_share", "vertical_share", "r", "g", "b", "colour_std", "z_q25", "z_q50",
    "z_q75", "top_area_share", "aspect", "fill")


@dataclass
class Segment:
    """One object cluster of a scan, with what association and the classifier need."""

    points: np.ndarray      # indices into the scan
    centroid: np.ndarray    # (3,) map frame
    yaw: float              # main horizontal axis, modulo pi
    extents: np.ndarray     # (3,) along the main axis, across it, vertical
    features: np.ndarray    # FEATURE_NAMES
    colour: np.ndarray      # (3,) mean RGB in [0, 1]


def describe(xyz: np.ndarray, rgb: np.ndarray, normals: np.ndarray,
             members: np.ndarray) -> Segment:
    p = xyz[members].astype(np.float64)
    xy = p[:, :2] - p[:, :2].mean(0)
    cov = np.cov(xy.T) if len(p) > 2 else np.eye(2)
    evals, evecs = np.linalg.eigh(cov)
    axis = evecs[:, int(np.argmax(evals))]
    yaw = float(np.arctan2(axis[1], axis[0]) % np.pi)
    across = np.array([-axis[1], axis[0]])
    u, v = xy @ axis, xy @ across
    length, width = float(np.ptp(u)), float(np.ptp(v))
    z = p[:, 2]
    height = float(np.ptp(z))
    up = np.abs(normals[members, 2])
    colour = rgb[members].astype(np.float64).mean(0) / 255.0
    # footprint box centre (not the point mean, which leans towards the seen side)
    box_xy = p[:, :2].mean(0) + (u.min() + u.max()) / 2 * axis + (v.min() + v.max()) / 2 * across
    centre = np.array([*box_xy, z.mean()])
    top = z > z.max() - 0.05
    cells = np.unique(np.floor(xy / 0.05).astype(np.int64), axis=0)
    footprint = max(length * width, 1e-4)
    features = np.array([
        length, width, height, z.min(), z.max(), z.mean(), footprint, np.log(len(p)),
        float((up > 0.8).mean()), float((up < 0.3).mean()), *colour,
        float(rgb[members].std() / 255.0), *np.percentile(z, [25, 50, 75]),
        float(top.mean()), length / max(width, 0.02), len(cells) * 0.0025 / footprint])
    return Segment(members, centre, yaw, np.array([length, width, height]), features, colour)
