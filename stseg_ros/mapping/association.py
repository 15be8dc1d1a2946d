"""Persistent identities across epochs and the changes between them.

Segments of the new epoch are matched to the objects the map knows in two
Hungarian rounds: first in place, by how many of the segment's points lie on
the object's stored points (within ``overlap_distance``), then, among what is
left, by shape and colour anywhere in the room (objects that moved). What
matches keeps its id; a match that travelled more than ``move_distance`` or
turned more than ``move_angle`` is a move.
Unmatched segments are new objects. An unmatched known object is removed only
if the new scan saw its place empty (floor across its footprint); otherwise it is
unobserved and keeps its state for a later revisit to settle. Likewise, a new
segment is an addition only where an earlier revisit saw the place empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from stseg_ros.mapping.geometric import Segment

BIG = 1e6


@dataclass(frozen=True)
class AssociationConfig:
    overlap_distance: float = 0.05     # m, a segment point this close lies on an object
    min_overlap: float = 0.3           # share of the segment or of the object that overlaps
    moved_shape: float = 0.3           # shape distance allowed for a move
    move_distance: float = 0.2         # m, a larger displacement is a move
    move_angle: float = math.radians(15.0)
    observed_share: float = 0.5        # footprint share that must show floor...
    standing_share: float = 0.2        # ...with at most this share showing something standing


@dataclass
class Known:
    """What association needs of a known object: its last segment and class."""

    id: int
    segment: Segment
    class_id: int
    points: np.ndarray                 # (K, 3) its points when last seen, map frame


def shape_distance(a: Segment, b: Segment) -> float:
    """Relative difference of size (sorted footprint, height) plus colour difference."""
    ea = np.array([max(a.extents[:2]), min(a.extents[:2]), a.extents[2]])
    eb = np.array([max(b.extents[:2]), min(b.extents[:2]), b.extents[2]])
    size = np.abs(ea - eb) / np.maximum(np.maximum(ea, eb), 0.1)
    return float(size.mean() + np.abs(a.colour - b.colour).mean() * 2.0)


def _yaw_change(a: Segment, b: Segment) -> float:
    """Turn between main axes (mod pi); 0 when the footprint has no main axis."""
    if max(a.extents[:2]) < 1.3 * min(a.extents[:2]):
        return 0.0
    d = abs(a.yaw - b.yaw) % math.pi
    return min(d, math.pi - d)


def _hungarian(cost: np.ndarray) -> list[tuple[int, int]]:
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return [(r, c) for r, c in zip(rows, cols, strict=True) if cost[r, c] < BIG]


@dataclass
class Association:
    matched: dict[int, int]          # segment index -> known id
    moved: set[int]                  # known ids that moved
    new: list[int]                   # segment indices without a known object
    missing: list[int]               # known ids not matched


def associate(segments: list[Segment], classes: list[int], scan_xyz: np.ndarray,
              known: list[Known], cfg: AssociationConfig = AssociationConfig()) -> Association:
    """Match this epoch's segments to known objects (two Hungarian rounds)."""
    n, m = len(segments), len(known)
    overlap = np.zeros((n, m))
    if n and m:
        owner = np.concatenate([np.full(len(k.points), j) for j, k in enumerate(known)])
        tree = cKDTree(np.concatenate([k.points for k in known]))
        sizes = np.array([max(len(k.points), 1) for k in known])
        for i, s in enumerate(segments):
            dist, idx = tree.query(scan_xyz[s.points], distance_upper_bound=cfg.overlap_distance)
            hit = owner[idx[np.isfinite(dist)]]
            counts = np.bincount(hit, minlength=m)
            overlap[i] = np.maximum(counts / len(s.points), counts / sizes)
    cost = np.where(overlap >= cfg.min_overlap, 1.0 - overlap, BIG)
    matched = {r: known[c].id for r, c in _hungarian(cost)}
    shape = np.array([[shape_distance(s, k.segment) for k in known] for s in segments]
                     ).reshape(n, m)
    free_s = [i for i in range(n) if i not in matched]
    used = set(matched.values())
    free_k = [j for j in range(m) if known[j].id not in used]
    sub = np.full((len(free_s), len(free_k)), BIG)
    for a, i in enumerate(free_s):
        for b, j in enumerate(free_k):
            if shape[i, j] < cfg.moved_shape and classes[i] == known[j].class_id:
                sub[a, b] = shape[i, j]
    for a, b in _hungarian(sub):
        matched[free_s[a]] = known[free_k[b]].id
    by_id = {k.id: k for k in known}
    moved: set[int] = set()
    for i, kid in matched.items():
        before = by_id[kid].segment
        shift = float(np.linalg.norm(segments[i].centroid[:2] - before.centroid[:2]))
        if shift > cfg.move_distance or _yaw_change(segments[i], before) > cfg.move_angle:
            moved.add(kid)
    used = set(matched.values())
    return Association(matched, moved, [i for i in range(n) if i not in matched],
                       [k.id for k in known if k.id not in used])


class EmptyPlaces:
    """A scan's floor and standing surfaces, indexed once, to ask of many footprints
    whether the scan saw them empty: floor over most of their 5 cm cells and hardly
    anything standing lower than the object's top."""

    def __init__(self, scan_xyz: np.ndarray) -> None:
        z = scan_xyz[:, 2]
        floor, standing = scan_xyz[z < 0.05], scan_xyz[z > 0.1]
        self.floor = cKDTree(floor[:, :2]) if len(floor) else None
        self.standing = cKDTree(standing[:, :2]) if len(standing) else None
        self.standing_z = standing[:, 2]

    def empty(self, obj: Segment, cfg: AssociationConfig = AssociationConfig()) -> bool:
        length, width = max(obj.extents[0], 0.1), max(obj.extents[1], 0.1)
        c, s = math.cos(obj.yaw), math.sin(obj.yaw)
        u, v = np.meshgrid(np.arange(-length / 2, length / 2 + 1e-6, 0.05),
                           np.arange(-width / 2, width / 2 + 1e-6, 0.05), indexing="ij")
        cells = np.stack([obj.centroid[0] + u.ravel() * c - v.ravel() * s,
                          obj.centroid[1] + u.ravel() * s + v.ravel() * c], -1)
        if self.floor is None:
            return False
        hits, _ = self.floor.query(cells, distance_upper_bound=0.05)
        if float(np.isfinite(hits).mean()) < cfg.observed_share:
            return False
        if self.standing is None:
            return True
        top = obj.centroid[2] + obj.extents[2] / 2 + 0.1
        near = self.standing.query_ball_point(cells, r=0.05)
        blocked = np.mean([bool(len(k)) and bool((self.standing_z[k] < top).any())
                           for k in near])
        return float(blocked) <= cfg.standing_share


def place_empty(obj: Segment, scan_xyz: np.ndarray,
                cfg: AssociationConfig = AssociationConfig()) -> bool:
    """Whether the scan saw the object's footprint empty (see ``EmptyPlaces``)."""
    return EmptyPlaces(scan_xyz).empty(obj, cfg)
