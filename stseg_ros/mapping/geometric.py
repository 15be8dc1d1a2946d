"""Non-learned segmentation of one scan: structure, object clusters, cluster features.

The scan is in the map frame, z up, floor near z = 0 (``mapping/gravity.py``
levels it). Every rule works on a voxel grid (3 cm), so a scan's point density
does not matter: a fused robot scan, a reconstructed mesh's vertices and a
sparse sample of them give the same structure and clusters. The rules are the
ones real rooms keep:

- the floor is the lowest upward-facing surface, found per 40 cm cell (a
  reconstructed floor bends by centimetres over a room, so no single plane
  fits it);
- a wall is a vertical surface with nothing behind it: the room was scanned
  from inside, so beyond a wall no point was seen, while the front of a
  cabinet has its own top behind it and a chair back its seat;
- the ceiling is the upward-facing band at the top, where one was seen;
- what is left is cut into objects by voxel connectivity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from stseg_ros.core.classes import class_id
from stseg_ros.core.segmentation import Segment

WALL, FLOOR, CEILING = class_id("wall"), class_id("floor"), class_id("ceiling")


@dataclass(frozen=True)
class GeometricConfig:
    voxel: float = 0.03             # m; every rule below works on this grid, made
    sparse_factor: float = 1.5      # coarser for sparse scans: at least this x point spacing
    normal_radius: float = 0.1      # m
    floor_cell: float = 0.4         # m; the floor height is found per cell of this size
    floor_search: float = 0.3       # m; the floor lies within this of z = 0
    floor_height: float = 0.06      # m above the local floor still counted as floor
    ceiling_band: float = 0.08      # m below the top still counted as ceiling
    wall_clear_from: float = 0.15   # m; a wall has (almost) nothing behind it from here...
    wall_clear_to: float = 0.8      # m; ...to here
    wall_min_height: float = 0.8    # m a wall surface must span vertically
    wall_min_width: float = 0.8     # m it must span horizontally
    link: float = 1.8               # voxel units; voxels this close belong together
    min_object_voxels: int = 15
    min_object_points: int = 60
    score_voxels: float = 150.0     # 5 cm voxels; a cluster this big has coverage 0.63


@dataclass
class VoxelGrid:
    """A scan reduced to occupied voxels, and the way back to its points."""

    coords: np.ndarray       # (V, 3) int64 voxel indices
    centres: np.ndarray      # (V, 3) mean position of each voxel's points
    point_voxel: np.ndarray  # (N,) voxel row of each point

    @classmethod
    def of(cls, xyz: np.ndarray, voxel: float) -> VoxelGrid:
        cells = np.floor(np.asarray(xyz, np.float64) / voxel).astype(np.int64)
        coords, inverse, counts = np.unique(cells, axis=0, return_inverse=True,
                                            return_counts=True)
        inverse = inverse.reshape(-1)
        centres = np.zeros((len(coords), 3))
        np.add.at(centres, inverse, xyz)
        return cls(coords, centres / np.maximum(counts, 1)[:, None], inverse)


def estimate_normals(xyz: np.ndarray, radius: float) -> np.ndarray:
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz.astype(np.float64)))
    pc.estimate_normals(o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=24))
    return np.asarray(pc.normals, dtype=np.float32)


def connected(coords: np.ndarray, reach: float) -> np.ndarray:
    """Connected component per voxel; voxels within ``reach`` (voxel units) connect."""
    if len(coords) == 0:
        return np.zeros(0, np.int64)
    pairs = cKDTree(coords.astype(np.float64)).query_pairs(reach, output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                       shape=(len(coords), len(coords)))
    return connected_components(graph, directed=False)[1]


def local_floor(centres: np.ndarray, normals: np.ndarray,
                cfg: GeometricConfig = GeometricConfig()) -> np.ndarray:
    """Floor height under each voxel: the lowest upward-facing voxel of its
    ``floor_cell`` column near z = 0, cells without one taking their nearest
    neighbour's, median-filtered over 3 x 3 cells."""
    if len(centres) == 0:
        return np.zeros(0)
    up = np.abs(normals[:, 2]) > 0.8
    candidate = up & (np.abs(centres[:, 2]) < cfg.floor_search)
    cell = np.floor(centres[:, :2] / cfg.floor_cell).astype(np.int64)
    cell -= cell.min(0)
    heights = np.full(cell.max(0) + 1, np.inf)
    np.minimum.at(heights, (cell[candidate, 0], cell[candidate, 1]), centres[candidate, 2])
    if np.isinf(heights).all():
        return np.zeros(len(centres))
    nearest = ndimage.distance_transform_edt(np.isinf(heights), return_distances=False,
                                             return_indices=True)
    heights = ndimage.median_filter(heights[tuple(nearest)], size=3)
    return heights[cell[:, 0], cell[:, 1]]


def nothing_behind(centres: np.ndarray, normals: np.ndarray,
                   cfg: GeometricConfig = GeometricConfig()) -> np.ndarray:
    """Per voxel: whether, along its horizontal normal on one side or the other,
    the scan's floor plan holds (almost) nothing from ``wall_clear_from`` to
    ``wall_clear_to``: it bounds the scanned space."""
    if len(centres) == 0:
        return np.zeros(0, bool)
    cell_size = 0.05
    reach = int(np.ceil(cfg.wall_clear_to / cell_size)) + 1
    cell = np.floor(centres[:, :2] / cell_size).astype(np.int64)
    origin = cell.min(0) - reach
    cell -= origin
    plan = np.zeros(cell.max(0) + reach + 1, bool)
    plan[cell[:, 0], cell[:, 1]] = True
    horizontal = normals[:, :2] / np.maximum(np.linalg.norm(normals[:, :2], axis=1,
                                                            keepdims=True), 1e-9)
    steps = np.arange(cfg.wall_clear_from, cfg.wall_clear_to, cell_size)
    clear = np.zeros(len(centres), bool)
    for side in (1.0, -1.0):
        probe = centres[:, None, :2] + side * steps[None, :, None] * horizontal[:, None, :]
        idx = np.floor(probe / cell_size).astype(np.int64) - origin
        clear |= plan[idx[..., 0], idx[..., 1]].sum(1) <= 1
    return clear


def voxel_structure(grid: VoxelGrid, normals: np.ndarray,
                    cfg: GeometricConfig = GeometricConfig()) -> np.ndarray:
    """Per voxel: FLOOR, CEILING, WALL or 0 (object candidates)."""
    c = grid.centres
    labels = np.zeros(len(c), dtype=np.int32)
    if len(c) == 0:
        return labels
    up = np.abs(normals[:, 2])
    above = c[:, 2] - local_floor(c, normals, cfg)
    labels[((above < cfg.floor_height) & (up > 0.7)) | (above < cfg.floor_height / 2)] = FLOOR
    top = np.percentile(c[:, 2], 99.5)
    if top > 2.0:                                   # a ceiling was seen at all
        labels[(c[:, 2] > top - cfg.ceiling_band) & (up > 0.7)] = CEILING
    bounding = np.flatnonzero((labels == 0) & (up < 0.4) & nothing_behind(c, normals, cfg))
    surface = connected(grid.coords[bounding], cfg.link)
    for k in np.unique(surface):
        rows = bounding[surface == k]
        if (np.ptp(c[rows, 2]) >= cfg.wall_min_height
                and np.ptp(c[rows, :2], axis=0).max() >= cfg.wall_min_width):
            labels[rows] = WALL
    return labels


def voxel_objects(grid: VoxelGrid, candidates: np.ndarray,
                  cfg: GeometricConfig = GeometricConfig()) -> np.ndarray:
    """Per voxel: object id (1, 2, ...) by connectivity of the ``candidates``,
    largest first; 0 elsewhere and for pieces under ``min_object_voxels``."""
    out = np.zeros(len(grid.coords), np.int64)
    rows = np.flatnonzero(candidates)
    component = connected(grid.coords[rows], cfg.link)
    sizes = np.bincount(component) if len(rows) else np.zeros(0, np.int64)
    order = [k for k in np.argsort(-sizes, kind="stable") if sizes[k] >= cfg.min_object_voxels]
    for new_id, k in enumerate(order, start=1):
        out[rows[component == k]] = new_id
    return out


@dataclass
class GeometricSplit:
    """One scan split into structure and object clusters, per point."""

    structure: np.ndarray    # (N,) FLOOR, CEILING, WALL or 0
    clusters: np.ndarray     # (N,) object id (1, 2, ...) or 0
    normals: np.ndarray      # (N, 3)


def point_spacing(xyz: np.ndarray, sample: int = 2000) -> float:
    """Median distance from a point to its nearest neighbour (a fixed sample)."""
    if len(xyz) < 2:
        return 0.0
    rows = np.random.default_rng(0).choice(len(xyz), min(sample, len(xyz)), replace=False)
    dist, _ = cKDTree(xyz).query(xyz[rows], k=2)
    return float(np.median(dist[:, 1]))


def split_scan(xyz: np.ndarray, cfg: GeometricConfig = GeometricConfig()) -> GeometricSplit:
    """Structure and object clusters of a scan, per point (the voxel rules above)."""
    normals = estimate_normals(xyz, cfg.normal_radius)
    if len(xyz) == 0:
        return GeometricSplit(np.zeros(0, np.int32), np.zeros(0, np.int64), normals)
    grid = VoxelGrid.of(xyz, max(cfg.voxel, cfg.sparse_factor * point_spacing(xyz)))
    voxel_normals = estimate_normals(grid.centres, cfg.normal_radius)
    structure = voxel_structure(grid, voxel_normals, cfg)
    objects = voxel_objects(grid, structure == 0, cfg)
    clusters = objects[grid.point_voxel]
    ids, counts = np.unique(clusters[clusters > 0], return_counts=True)
    small = ids[counts < cfg.min_object_points]
    clusters[np.isin(clusters, small)] = 0
    return GeometricSplit(structure[grid.point_voxel], clusters, normals)


def coverage(voxels, scale: float):
    """How much of an object a segment of this many occupied 5 cm voxels
    probably is, from its size alone: 1 - exp(-voxels / scale), so that
    fragments rank below whole objects whatever the class evidence says."""
    return 1.0 - np.exp(-np.asarray(voxels, np.float64) / scale)


def occupied_voxels(xyz: np.ndarray, voxel: float = 0.05) -> int:
    return len(np.unique(np.floor(np.asarray(xyz) / voxel).astype(np.int64), axis=0))


FEATURE_NAMES = (
    "length", "width", "height", "z_min", "z_max", "z_mean", "footprint", "log_points",
    "horizontal_share", "vertical_share", "r", "g", "b", "colour_std", "z_q25", "z_q50",
    "z_q75", "top_area_share", "aspect", "fill")


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
