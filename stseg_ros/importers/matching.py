"""Which object of a later scan is which earlier object, when the dataset does
not say (ScanNet's rescans of a room share no instance ids).

After the later scan is aligned to the map, each of its objects is compared
with every 4D object seen so far (the points it had where it was last seen):
the overlap of two objects is the share of one's points that have a point of
the other within ``radius`` (5 cm), taking the larger of the two shares, as
rescans often see different parts of an object (a cabinet's top in one, its
front in the other) and the part seen less then lies on the other. Objects of the same class, or of
classes annotators swap between scans (table/counter/desk, shelves/bookshelf/
cabinet, ...), are paired by the Hungarian method on that overlap; a pair
below ``min_overlap`` is no match. What remains may be an object that moved:
``match_by_shape`` pairs leftovers of compatible class and similar size whose
centres lie within ``max_move``, where each is the other's only candidate; one
that shifted less than ``min_move`` is taken to have stayed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from stseg_ros.core.classes import class_id

# classes annotators give the same object in different scans
RELABEL_GROUPS = [
    {class_id(n) for n in ("table", "counter", "desk")},
    {class_id(n) for n in ("shelves", "bookshelf", "cabinet", "dresser", "night stand")},
    {class_id(n) for n in ("chair", "sofa")},
    {class_id(n) for n in ("curtain", "blinds", "shower curtain")},
    {class_id(n) for n in ("picture", "whiteboard", "mirror")},
    {class_id(n) for n in ("box", "otherprop", "otherfurniture", "bag", "books", "paper")},
    {class_id(n) for n in ("pillow", "clothes", "towel")},
    {class_id(n) for n in ("wall", "otherstructure")},
    {class_id(n) for n in ("floor", "floor mat")},
]


def compatible(a: int, b: int) -> bool:
    """Same class, or classes annotators use for the same object."""
    return a == b or any(a in g and b in g for g in RELABEL_GROUPS)


@dataclass
class Track:
    """A 4D object as last seen: its points in the map frame and its class there."""

    id: int
    class_id: int
    xyz: np.ndarray


@dataclass(frozen=True)
class MatchConfig:
    radius: float = 0.05        # m, point neighbourhood for overlap
    min_overlap: float = 0.3    # overlap below this is no match
    min_points: int = 10        # an object side with fewer points has no overlap share
    max_move: float = 3.0       # m, how far a shape match may have moved
    min_move: float = 0.2       # m, a shape match nearer than this stayed (no event)
    size_tolerance: float = 0.35  # relative difference of height and footprint diagonal


def _nearest_owner(query: np.ndarray, points: np.ndarray, owners: np.ndarray,
                   radius: float) -> np.ndarray:
    """Owner of the nearest of ``points`` within ``radius`` of each query point (-1: none)."""
    if len(points) == 0 or len(query) == 0:
        return np.full(len(query), -1, dtype=np.int64)
    dist, idx = cKDTree(points).query(query, distance_upper_bound=radius)
    found = np.isfinite(dist)
    out = np.full(len(query), -1, dtype=np.int64)
    out[found] = owners[idx[found]]
    return out


def overlap_matrix(current: dict[int, np.ndarray], tracks: list[Track], radius: float,
                   min_points: int = 10) -> tuple[list[int], np.ndarray]:
    """Overlap of every current object (rows, ascending ids) with every track (columns):
    the larger of the two shares of an object's points that have a point of the other
    within ``radius`` (a side with fewer than ``min_points`` points does not count)."""
    keys = sorted(current)
    m = np.zeros((len(keys), len(tracks)))
    if not keys or not tracks:
        return keys, m
    cur_xyz = np.concatenate([current[k] for k in keys])
    cur_owner = np.repeat(np.arange(len(keys)), [len(current[k]) for k in keys])
    trk_xyz = np.concatenate([t.xyz for t in tracks])
    trk_owner = np.repeat(np.arange(len(tracks)), [len(t.xyz) for t in tracks])
    near_cur, near_trk = np.zeros_like(m), np.zeros_like(m)
    hit = _nearest_owner(cur_xyz, trk_xyz, trk_owner, radius)
    ok = hit >= 0
    np.add.at(near_cur, (cur_owner[ok], hit[ok]), 1)
    hit = _nearest_owner(trk_xyz, cur_xyz, cur_owner, radius)
    ok = hit >= 0
    np.add.at(near_trk, (hit[ok], trk_owner[ok]), 1)
    n_cur = np.array([len(current[k]) for k in keys], float)[:, None]
    n_trk = np.array([len(t.xyz) for t in tracks], float)[None, :]
    # partial views: the side seen less may lie wholly on the other, the other not on it
    return keys, np.maximum(np.where(n_cur >= min_points, near_cur / n_cur, 0.0),
                            np.where(n_trk >= min_points, near_trk / n_trk, 0.0))


def match_by_overlap(current: dict[int, np.ndarray], classes: dict[int, int],
                     tracks: list[Track], cfg: MatchConfig = MatchConfig()
                     ) -> tuple[dict[int, tuple[int, float]], dict[int, float]]:
    """Current object -> (track id, overlap) for the pairs the Hungarian method keeps,
    and every current object's best overlap with a track of compatible class."""
    keys, m = overlap_matrix(current, tracks, cfg.radius, cfg.min_points)
    if m.size == 0:
        return {}, {k: 0.0 for k in keys}
    allowed = np.array([[compatible(classes[k], t.class_id) for t in tracks] for k in keys])
    score = np.where(allowed, m, 0.0)
    rows, cols = linear_sum_assignment(-score)
    kept = {keys[r]: (tracks[c].id, float(score[r, c])) for r, c in zip(rows, cols, strict=True)
            if score[r, c] >= cfg.min_overlap}
    return kept, {k: float(score[r].max()) for r, k in enumerate(keys)}


def _size(xyz: np.ndarray) -> tuple[np.ndarray, float, float]:
    lo, hi = xyz.min(axis=0), xyz.max(axis=0)
    return (lo + hi) / 2, float(hi[2] - lo[2]), float(np.hypot(*(hi[:2] - lo[:2])))


def match_by_shape(current: dict[int, np.ndarray], classes: dict[int, int],
                   tracks: list[Track], cfg: MatchConfig = MatchConfig()
                   ) -> dict[int, tuple[int, float]]:
    """Current object -> (track id, distance moved in m) for leftovers of compatible
    class and similar height and footprint within ``max_move`` of each other, where
    each is the other's only such candidate."""
    keys = sorted(current)
    if not keys or not tracks:
        return {}
    cost = np.full((len(keys), len(tracks)), np.inf)
    for r, k in enumerate(keys):
        ck, hk, dk = _size(current[k])
        for c, t in enumerate(tracks):
            if not compatible(classes[k], t.class_id):
                continue
            ct, ht, dt = _size(t.xyz)
            similar = (abs(hk - ht) <= cfg.size_tolerance * max(hk, ht, 0.05)
                       and abs(dk - dt) <= cfg.size_tolerance * max(dk, dt, 0.05))
            dist = float(np.linalg.norm((ck - ct)[:2]))
            if similar and dist <= cfg.max_move:
                cost[r, c] = dist
    feasible = np.isfinite(cost)
    # only unambiguous pairs: the one candidate on both sides (many small props look alike)
    unique = feasible & (feasible.sum(axis=1, keepdims=True) == 1) & \
        (feasible.sum(axis=0, keepdims=True) == 1)
    return {keys[r]: (tracks[c].id, float(cost[r, c])) for r, c in zip(*np.nonzero(unique),
                                                                      strict=True)}


STRUCTURE = {class_id(n) for n in ("wall", "floor", "ceiling")}


def footprint_seen(xyz: np.ndarray, seen_cells: np.ndarray, cell: float = 0.1) -> float:
    """Share of an object's floor-plan cells in which the later scan has points
    (under a removed object the floor shows; a part of the room the scan
    missed has no points at all)."""
    cells = np.unique(_cells(xyz, cell))
    return float(np.isin(cells, seen_cells).mean()) if len(cells) else 0.0


def _cells(xyz: np.ndarray, cell: float) -> np.ndarray:
    ij = np.floor(np.asarray(xyz)[:, :2] / cell).astype(np.int64) + (1 << 30)
    return (ij[:, 0] << 32) | ij[:, 1]


def link_scans(scans, register, cfg: MatchConfig = MatchConfig(), log=print,
               min_seen: float = 0.5) -> list:
    """Epochs of one room's scans (scan order): each later scan registered to the
    first with ``register`` (its transform used whatever its verdict), its
    objects matched to earlier 4D objects by overlap, then by shape; changes
    since the previous scan, all uncertain (``ambiguous``): nothing in the data
    confirms them."""
    from stseg_ros.core.classes import class_name
    from stseg_ros.core.layout import ChangeEntry
    from stseg_ros.core.pointcloud import transform_points
    from stseg_ros.importers.common import Epoch, pose_of

    epochs: list[Epoch] = []
    tracks: dict[int, Track] = {}
    reported_removed: set[int] = set()
    next_id = 1
    map_xyz = np.asarray(scans[0].xyz, np.float64)
    for t, scan in enumerate(scans):
        if t == 0:
            pose, alignment = np.eye(4), {"method": "first scan: the map frame",
                                          "verdict": "reference"}
        else:
            reg = register(np.asarray(scan.xyz, np.float64), map_xyz)
            pose = np.asarray(reg.map_from_scan, dtype=float)
            alignment = {"method": "register_levelled to the first scan",
                         "verdict": "accepted" if reg.success else "refused",
                         "reason": reg.reason, "fitness": round(float(reg.fitness), 4),
                         "rmse": round(float(reg.inlier_rmse), 4),
                         "seconds": round(float(reg.seconds), 2)}
        in_map = transform_points(pose, np.asarray(scan.xyz, np.float64))
        current = {obj: in_map[scan.object_id == obj] for obj in scan.objects}
        classes = {obj: int(scan.classes.get(obj, 0)) for obj in current}
        ids: dict[int, int] = {}
        how: dict[int, dict] = {}
        changes: list[ChangeEntry] = []
        counts = {"overlap": 0, "shape": 0, "new": 0, "removed": 0, "unseen": 0}
        if t == 0:
            for obj in sorted(current):
                ids[obj] = next_id
                how[next_id] = {"match": "first"}
                next_id += 1
        else:
            previous = set(epochs[-1].ids.values())
            by_overlap, best = match_by_overlap(current, classes, list(tracks.values()), cfg)
            for obj, (tid, value) in by_overlap.items():
                ids[obj] = tid
                how[tid] = {"match": "overlap", "overlap": round(value, 3)}
            counts["overlap"] = len(by_overlap)
            left = {o: p for o, p in current.items() if o not in ids}
            vacant = [tr for tid, tr in tracks.items()
                      if tid in previous and tid not in ids.values()]
            by_shape = match_by_shape(left, classes, vacant, cfg)
            for obj, (tid, dist) in by_shape.items():
                ids[obj] = tid
                how[tid] = {"match": "shape", "overlap": round(best[obj], 3),
                            "moved_m": round(dist, 3)}
                if classes[obj] not in STRUCTURE and dist >= cfg.min_move:
                    changes.append(ChangeEntry(
                        "moved", tid, classes[obj], True, pose_of(tracks[tid].xyz),
                        pose_of(current[obj]),
                        extra={"reason": f"no overlap match; a {class_name(classes[obj])} of "
                                         f"similar size is {dist:.2f} m away"}))
            counts["shape"] = len(by_shape)
            for obj in sorted(o for o in current if o not in ids):
                ids[obj] = next_id
                how[next_id] = {"match": "new", "overlap": round(best[obj], 3)}
                if classes[obj] not in STRUCTURE:
                    changes.append(ChangeEntry(
                        "added", next_id, classes[obj], True, None, pose_of(current[obj]),
                        extra={"reason": "no earlier object overlaps it or has its shape"}))
                next_id += 1
                counts["new"] += 1
            for obj, tid in ids.items():
                if tid in reported_removed and how[tid]["match"] != "new":
                    reported_removed.discard(tid)
                    changes.append(ChangeEntry(
                        "added", tid, classes[obj], True, None, pose_of(current[obj]),
                        extra={"reason": "seen again after it was missed"}))
            seen_cells = np.unique(_cells(in_map, 0.1))
            for tid in sorted(previous - set(ids.values())):
                track = tracks[tid]
                seen = footprint_seen(track.xyz, seen_cells)
                if seen >= min_seen and track.class_id not in STRUCTURE:
                    reported_removed.add(tid)
                    changes.append(ChangeEntry(
                        "removed", tid, track.class_id, True, pose_of(track.xyz), None,
                        extra={"reason": "not found where it was, and that place was "
                                         f"scanned ({seen:.0%} of its footprint)"}))
                    counts["removed"] += 1
                else:
                    counts["unseen"] += 1
        for obj, tid in ids.items():
            tracks[tid] = Track(tid, classes[obj], current[obj])
        verdict = alignment["verdict"]
        if t:
            verdict += (f" (fitness {alignment['fitness']:.2f}, rmse {alignment['rmse']:.3f} m"
                        f"{'' if alignment['reason'] == 'ok' else ': ' + alignment['reason']})")
        log(f"{scan.name}: {len(scan.xyz)} points, {len(current)} objects, alignment "
            f"{verdict}" + ("" if t == 0 else
                            f", matched {counts['overlap']} by overlap and {counts['shape']} "
                            f"by shape, {counts['new']} new, {counts['removed']} missing, "
                            f"{counts['unseen']} not in view"))
        epochs.append(Epoch(scan, pose, ids, how, changes, alignment,
                            {"import": {"matching": "overlap after register_levelled",
                                        "counts": counts}}))
    return epochs
