"""Persistent identities across epochs and the changes between them.

Segments of the new epoch are matched to the objects the map knows in
Hungarian rounds: first in place, by how many of the segment's points lie on
the object's stored points (within ``overlap_distance``), then doors and
windows within their reach (a door swings), then, among what is
left, by shape and colour anywhere in the room (objects that moved), and
last, more loosely, for objects whose place the scan saw empty. What
matches keeps its id. How far it travelled comes from aligning its stored
points to the new segment (ICP, from where it stood and from the centroid
shift), not from comparing centroids: a segment seen from another side has
another centroid without having moved. More than ``move_distance`` or
``move_angle`` is a move (a turn only between views of about the same
footprint, and where it moves the object's ends more than ``turn_arc``).
Unmatched segments are new objects. An unmatched known object is removed only
if the new scan saw its place empty (floor across its footprint); otherwise it is
unobserved and keeps its state for a later revisit to settle. Likewise, a new
segment is an addition only where an earlier revisit saw the place empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import open3d as o3d
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree

from stseg_ros.core.classes import is_fixture
from stseg_ros.core.fields import setting
from stseg_ros.core.records import ObjectRecord, ObjectState
from stseg_ros.core.segmentation import Segment

BIG = 1e6


@dataclass(frozen=True)
class AssociationConfig:
    overlap_distance: float = setting(  # m, a segment point this close lies on an object
        0.05, above=0)
    min_overlap: float = setting(      # share of the segment or of the object that overlaps
        0.3, low=0, high=1)
    moved_shape: float = setting(0.3, low=0)  # shape distance allowed for a move
    vacated_shape: float = setting(    # shape distance allowed for a move when the object's
        0.6, low=0)                    # old place is seen empty
    move_distance: float = setting(0.2, low=0)  # m, a larger displacement is a move
    move_angle: float = setting(       # rad, a larger turn is a move (15 deg)
        math.radians(15.0), low=0)
    turn_view: float = setting(        # a turn alone is a move only between footprints this
        0.25, low=0)                   # alike (relative; and turn_arc)
    turn_arc: float = setting(         # m, a turn alone is a move only if it moves the
        0.05, low=0)                   # object's ends this far (and within turn_view)
    align_distance: float = setting(   # m, a point this close to the other cloud fits
        0.03, above=0)
    min_fit: float = setting(          # share of a segment that must fit to measure a move
        0.3, low=0, high=1)
    observed_share: float = setting(   # an object's old place is seen empty when at least
        0.5, low=0, high=1)            # this share of its footprint shows floor...
    standing_share: float = setting(   # ...and at most this share of it shows something
        0.2, low=0, high=1)            # standing
    min_change_confidence: float = setting(  # change events less likely real than this are
        0.3, low=0, high=1)            # not reported (README, "Change events")
    change_confidence: str = setting(  # change-confidence model file (stseg
        "")                            # calibrate-changes); empty: the shipped one
    forget_after: int = setting(       # revisits; an object seen in one revisit only and
        3, low=0)                      # missed in more since is matched only in place
                                       # and never reported removed (0: never)


@dataclass
class Known:
    """What association needs of a known object: its view (``keeps_view``) and class."""

    id: int
    segment: Segment
    class_id: int
    points: np.ndarray                 # (K, 3) its points in that view, map frame
    first_seen: int = 0                # epoch


def forgotten(obj: ObjectRecord, epoch: int, cfg: AssociationConfig) -> bool:
    """Whether association offers ``obj`` to the segments of ``epoch`` only in
    place: it was seen in one revisit only (most such objects are fragments of
    one bad segmentation) and has been missed for more than ``forget_after``
    revisits since. It keeps its id and record, but no longer takes the id of
    an object elsewhere, and is never reported removed. Read off the stored
    record alone, so that a restart forgets the same."""
    return (cfg.forget_after > 0 and obj.state == ObjectState.UNOBSERVED
            and obj.epoch_first_seen == obj.epoch_last_seen
            and epoch - obj.epoch_last_seen > cfg.forget_after)


FRAGMENT_SHARE = 0.5   # a view with fewer points than this share of the kept one...


def keeps_view(kept_centroid, kept_extents, kept_yaw: float, kept_points: int,
               new_centroid, new_points: int) -> bool:
    """Whether an object's kept view stays its view after a new sighting: when
    the new one is a fragment of it (under ``FRAGMENT_SHARE`` of its points, with
    its centre inside the kept view's footprint). One bad revisit then does not
    shrink what later revisits are matched against; a sighting elsewhere (a
    move) or a fuller one replaces it. Plain values, so that the mapper and its
    restart (from the stored observations) decide alike."""
    if new_points >= FRAGMENT_SHARE * kept_points:
        return False
    c, s = math.cos(kept_yaw), math.sin(kept_yaw)
    dx, dy = new_centroid[0] - kept_centroid[0], new_centroid[1] - kept_centroid[1]
    u, v = dx * c + dy * s, -dx * s + dy * c
    return abs(u) <= kept_extents[0] / 2 and abs(v) <= kept_extents[1] / 2


def shape_distance(a: Segment, b: Segment) -> float:
    """Relative difference of size (sorted footprint, height) plus colour difference."""
    ea = np.array([max(a.extents[:2]), min(a.extents[:2]), a.extents[2]])
    eb = np.array([max(b.extents[:2]), min(b.extents[:2]), b.extents[2]])
    size = np.abs(ea - eb) / np.maximum(np.maximum(ea, eb), 0.1)
    return float(size.mean() + np.abs(a.colour - b.colour).mean() * 2.0)


def _pointcloud(xyz: np.ndarray) -> o3d.geometry.PointCloud:
    return o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(xyz, np.float64)))


def displacement(now_xyz: np.ndarray, before_xyz: np.ndarray, guess: np.ndarray,
                 fit_distance: float = 0.03) -> tuple[float, float, float]:
    """How an object moved between two sightings: (shift m, turn rad, fit share).

    The new points are aligned to the stored ones by point-to-point ICP, once
    starting where the object stood and once from ``guess`` (the centroid
    shift), keeping the alignment that fits more of the new points; partial
    views align on their common part. The shift is that of the stored points'
    centroid, the turn that about the vertical.
    """
    reg = o3d.pipelines.registration
    source, target = _pointcloud(now_xyz), _pointcloud(before_xyz)
    best = None
    for init in (np.eye(4), guess):
        transform = init
        for distance in (0.15, 0.06, fit_distance):
            transform = reg.registration_icp(
                source, target, distance, transform,
                reg.TransformationEstimationPointToPoint(),
                reg.ICPConvergenceCriteria(max_iteration=20)).transformation
        fit = reg.evaluate_registration(source, target, fit_distance, transform).fitness
        if best is None or fit > best[1] + 0.05:      # the guess must fit clearly better
            best = (transform, fit)
    transform, fit = best
    before_from_now = transform                        # now points -> where they were
    now_from_before = np.linalg.inv(before_from_now)
    centre = np.asarray(before_xyz, np.float64).mean(axis=0)
    moved_centre = now_from_before[:3, :3] @ centre + now_from_before[:3, 3]
    shift = float(np.linalg.norm((moved_centre - centre)[:2]))
    turn = abs(math.atan2(now_from_before[1, 0], now_from_before[0, 0]))
    return shift, turn, fit


def _moved(now_xyz: np.ndarray, now: Segment, before: Known, in_place: bool,
           cfg: AssociationConfig) -> bool:
    """Whether a matched object moved; a match found in place whose points cannot be
    aligned (too partial a view) is taken to have stayed."""
    guess = np.eye(4)
    guess[:2, 3] = before.segment.centroid[:2] - now.centroid[:2]
    shift, turn, fit = displacement(now_xyz, before.points, guess, cfg.align_distance)
    if fit < cfg.min_fit:
        if in_place:
            return False
        shift, turn = float(np.linalg.norm(guess[:2, 3])), 0.0
    # ICP turns partial views and small objects by 15-20 deg without a move (a
    # static real kitchen: a half-seen box, a 20 cm lamp), so a turn needs two
    # views of about the same footprint and an arc at the object's ends that
    # noise cannot make
    a, b = np.asarray(now.extents[:2]), np.asarray(before.segment.extents[:2])
    alike = bool(np.all(np.abs(a - b) <= cfg.turn_view * np.maximum(np.maximum(a, b), 1e-3)))
    reach = 0.5 * math.hypot(*a)
    turned = turn > cfg.move_angle and alike and turn * reach >= cfg.turn_arc
    return shift > cfg.move_distance or turned


def _hungarian(cost: np.ndarray) -> list[tuple[int, int]]:
    if cost.size == 0:
        return []
    rows, cols = linear_sum_assignment(cost)
    return [(r, c) for r, c in zip(rows, cols, strict=True) if cost[r, c] < BIG]


def _match_by_shape(matched: dict[int, int], shape: np.ndarray, classes: list[int],
                    known: list[Known], candidates, limit: float) -> None:
    """Add Hungarian matches on shape distance between unmatched segments and the
    unmatched ``candidates`` (indices into ``known``) of the same class."""
    used = set(matched.values())
    free_s = [i for i in range(shape.shape[0]) if i not in matched]
    free_k = [j for j in candidates if known[j].id not in used]
    sub = np.full((len(free_s), len(free_k)), BIG)
    for a, i in enumerate(free_s):
        for b, j in enumerate(free_k):
            if shape[i, j] < limit and classes[i] == known[j].class_id:
                sub[a, b] = shape[i, j]
    for a, b in _hungarian(sub):
        matched[free_s[a]] = known[free_k[b]].id


# m; the farthest a door's centre swings (a wide door leaf). A segment called a
# door that is wider (a wall piece, a row of cabinets) reaches no farther: on a
# generated room one 3.8 m wide took the id of a door 3.8 m away.
FIXTURE_REACH = 1.2


def _match_fixtures(matched: dict[int, int], segments: list[Segment], classes: list[int],
                    known: list[Known], candidates) -> None:
    """Give door and window segments the id of a known fixture of their class
    within reach (the longer footprint side of the two, at most
    ``FIXTURE_REACH``), nearest first, among
    the ``candidates`` (indices into ``known``) no other segment took: where
    the segment is unmatched, or was matched to an object of another class (a
    fragment the segmenter once called something else). Fixtures do not
    move, but a door swings about its hinge, so its points leave the place
    they had (no overlap) without leaving the door's reach; with the 4D
    segmenter no shape round catches it, and on generated histories a door
    took a new id each time it opened or closed."""
    by_id = {k.id: k for k in known}
    used = set(matched.values())
    free_s = [i for i in range(len(segments)) if is_fixture(classes[i]) and (
        i not in matched or by_id[matched[i]].class_id != classes[i])]
    free_k = [j for j in candidates if known[j].id not in used
              and is_fixture(known[j].class_id)]
    cost = np.full((len(free_s), len(free_k)), BIG)
    for a, i in enumerate(free_s):
        for b, j in enumerate(free_k):
            s, k = segments[i], known[j].segment
            gap = float(np.hypot(*(np.asarray(s.centroid[:2]) - k.centroid[:2])))
            reach = min(max(*s.extents[:2], *k.extents[:2]), FIXTURE_REACH)
            if classes[i] == known[j].class_id and gap <= reach:
                cost[a, b] = gap
    for a, b in _hungarian(cost):
        matched[free_s[a]] = known[free_k[b]].id


def _plausible(segment: Segment, known: Known, overlap: float,
               seen_now: EmptyPlaces | None, cfg: AssociationConfig,
               returning: bool = False) -> bool:
    """Whether a segmenter's identity proposal can stand: in place, or shaped
    like the object (more loosely where its old place was seen empty). On real
    rescans most of the 4D network's links to far-away objects joined shapes
    as unlike as a 1.6 m shelf and a 1.2 m tall lamp, each reported as a move.
    An object already removed (``returning``) comes back only in place: on
    generated histories of ten revisits, new objects took the ids of removed
    ones of their class elsewhere in the room."""
    if overlap >= cfg.min_overlap:
        return True
    if returning:
        return False
    limit = cfg.moved_shape
    if seen_now is not None and seen_now.empty(known.segment, cfg):
        limit = cfg.vacated_shape
    return shape_distance(segment, known.segment) < limit


def _in_place_first(matched: dict[int, int], overlap: np.ndarray, hits: np.ndarray,
                    segments: list[Segment], known: list[Known],
                    cfg: AssociationConfig) -> dict[int, int]:
    """Proposals corrected where the map's own record of a place is stronger.

    A segment proposed a younger id that lies mostly on an older object no
    proposal took takes the older id: a segmenter that split an object's
    history into two tracks must not give it a new identity. An object proposed
    to a segment that covers little of it goes to an unproposed segment lying
    on it with at least twice the points: a fragment must not take the id of
    the object it broke from.
    """
    column = {k.id: j for j, k in enumerate(known)}
    taken = set(matched.values())
    for i, kid in sorted(matched.items()):
        share = hits[i] / max(len(segments[i].points), 1)
        older = [j for j in range(len(known)) if known[j].id not in taken
                 and share[j] >= cfg.min_overlap
                 and known[j].first_seen < known[column[kid]].first_seen]
        if older:
            best = max(older, key=lambda j: share[j])
            taken = (taken - {kid}) | {known[best].id}
            matched[i] = known[best].id
    free = {i for i in range(len(segments)) if i not in matched}
    for i, kid in sorted(matched.items()):
        j = column[kid]
        rivals = [r for r in free if overlap[r, j] >= cfg.min_overlap
                  and hits[r, j] >= 2 * hits[i, j]]
        if rivals:
            best = max(rivals, key=lambda r: hits[r, j])
            del matched[i]
            matched[best] = kid
            free = (free - {best}) | {i}
    return matched


@dataclass
class Association:
    matched: dict[int, int]          # segment index -> known id
    moved: set[int]                  # known ids that moved
    new: list[int]                   # segment indices without a known object
    missing: list[int]               # known ids not matched
    vacated: set[int]                # known ids, unmatched by shape, whose place was seen empty


def associate(segments: list[Segment], classes: list[int], scan_xyz: np.ndarray,
              known: list[Known], cfg: AssociationConfig = AssociationConfig(),
              seen_now: EmptyPlaces | None = None,
              proposed: dict[int, int] | None = None,
              in_place_only: frozenset[int] = frozenset()) -> Association:
    """Match this epoch's segments to known objects.

    Hungarian rounds: in place by point overlap; doors and windows within
    reach (``_match_fixtures``); elsewhere by shape and
    colour; and, when ``seen_now`` tells which places this scan saw empty, an
    object whose place is empty is matched more loosely to a segment of its
    class elsewhere (it was moved, not removed and another one added, and a
    moved object is often seen from another side).

    ``proposed`` (segment index -> known id, from a segmenter that tracks
    identities) replaces the shape rounds. A proposal is taken where the
    segment lies on the object, or, elsewhere, where their shapes agree
    (``_plausible``), then
    corrected in place (``_in_place_first``); segments without a kept
    proposal may still match a remaining object in place. What
    moved, and which unmatched objects' places are empty, is measured here.
    Objects ``in_place_only`` (ids: removed before, or ``forgotten``) are
    matched only in place and never found vacated.
    """
    n, m = len(segments), len(known)
    overlap, hits = np.zeros((n, m)), np.zeros((n, m))
    if n and m:
        owner = np.concatenate([np.full(len(k.points), j) for j, k in enumerate(known)])
        tree = cKDTree(np.concatenate([k.points for k in known]))
        sizes = np.array([max(len(k.points), 1) for k in known])
        for i, s in enumerate(segments):
            dist, idx = tree.query(scan_xyz[s.points], distance_upper_bound=cfg.overlap_distance)
            hit = owner[idx[np.isfinite(dist)]]
            hits[i] = np.bincount(hit, minlength=m)
            overlap[i] = np.maximum(hits[i] / len(s.points), hits[i] / sizes)
    column = {k.id: j for j, k in enumerate(known)}
    cost = np.where(overlap >= cfg.min_overlap, 1.0 - overlap, BIG)
    if proposed is not None:
        matched = _in_place_first({i: kid for i, kid in proposed.items()
                                   if _plausible(segments[i], known[column[kid]],
                                                 overlap[i, column[kid]], seen_now, cfg,
                                                 kid in in_place_only)},
                                  overlap, hits, segments, known, cfg)
        taken = [column[kid] for kid in matched.values()]
        cost[list(matched)] = BIG            # proposed segments and objects are settled
        cost[:, taken] = BIG
    else:
        matched = {}
    matched.update({r: known[c].id for r, c in _hungarian(cost)})
    anywhere = [j for j in range(m) if known[j].id not in in_place_only]
    _match_fixtures(matched, segments, classes, known, anywhere)
    # after the fixtures, which may give a segment another object
    in_place = {i for i, kid in matched.items() if overlap[i, column[kid]] >= cfg.min_overlap}
    if proposed is None:
        shape = np.array([[shape_distance(s, k.segment) for k in known] for s in segments]
                         ).reshape(n, m)
        _match_by_shape(matched, shape, classes, known, anywhere, cfg.moved_shape)
    vacated: list[int] = []
    if seen_now is not None:
        used = set(matched.values())
        # a door's footprint is bare whenever it stands open: fixtures are not
        # removed for it
        vacated = [j for j in anywhere if known[j].id not in used
                   and not is_fixture(known[j].class_id)
                   and seen_now.empty(known[j].segment, cfg)]
        if proposed is None:
            _match_by_shape(matched, shape, classes, known, vacated, cfg.vacated_shape)
    by_id = {k.id: k for k in known}
    moved = {kid for i, kid in matched.items()
             if _moved(scan_xyz[segments[i].points], segments[i], by_id[kid],
                       i in in_place, cfg)}
    used = set(matched.values())
    return Association(matched, moved, [i for i in range(n) if i not in matched],
                       [k.id for k in known if k.id not in used],
                       {known[j].id for j in vacated})


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
