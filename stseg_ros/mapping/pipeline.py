"""The long-term mapper: one revisit's scan in, the map's new state out.

Per revisit: level the scan (z up, ``gravity.py``), register it to the map
(the first revisit defines the map frame; later ones register to the static
structure the registered revisits agree on, ``structure.py``, so a first
revisit that saw half the room does not limit every later one), bend its
fragments onto the map to undo odometry drift, segment it, give segments
persistent identities, detect changes, and commit everything to the object
memory in one transaction. A revisit that cannot be registered is recorded
as such with its scan segmented in its own (levelled) frame, for the user to
inspect, and changes nothing else. The ROS mapper node and ``stseg run``
both drive this class.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np

from stseg_ros.core.classes import is_fixture
from stseg_ros.core.records import ChangeKind, ChangeRecord, ObjectRecord, ObjectState, Pose
from stseg_ros.core.segmentation import Segment, Segmenter
from stseg_ros.mapping.association import (
    AssociationConfig,
    EmptyPlaces,
    Known,
    associate,
    forgotten,
    keeps_view,
)
from stseg_ros.mapping.confidence import ConfidenceModel
from stseg_ros.mapping.drift import DriftConfig, FusedScan, bend_onto_map, corrected, place
from stseg_ros.mapping.geometric import GeometricConfig, describe, estimate_normals
from stseg_ros.mapping.gravity import LevellingConfig, level_scan
from stseg_ros.mapping.labels import (
    LabelConfig,
    LabelSet,
    apply_labels,
    class_names,
    unknown_labels,
)
from stseg_ros.mapping.registration import RegistrationConfig, register_scan
from stseg_ros.mapping.structure import CellTally, StaticStructure
from stseg_ros.memory import EpochEntry, EpochPoints, ObjectMemory

log = logging.getLogger(__name__)
SEEN_VOXEL = 0.02      # m; cells of the union of what earlier revisits saw
# m; cells of the map's static structure, the finest registration level
# (registration.voxel / 2 by default)
STRUCTURE_VOXEL = 0.025

@dataclass
class EpochOutcome:
    """What one revisit did to the map, with per-stage timings (seconds).
    ``levelling`` says how the scan's up direction was chosen."""

    epoch: int
    registered: bool
    map_from_odom: np.ndarray
    reason: str
    instance_id: np.ndarray          # per mapped point (the scan in the map frame), id or 0
    class_id: np.ndarray             # per mapped point
    objects: list[ObjectRecord] = field(default_factory=list)
    changes: list[ChangeRecord] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    levelling: str = ""
    # what the revisit was compared with: the map's points it was registered
    # to, and the known objects its segments were matched against
    reference_points: int = 0
    candidates: int = 0


class Mapper:
    def __init__(self, memory: ObjectMemory, segmenter: Segmenter,
                 registration: RegistrationConfig | None = None,
                 association: AssociationConfig | None = None,
                 drift: DriftConfig | None = None,
                 levelling: LevellingConfig | None = None,
                 labels: LabelConfig | None = None,
                 label_set: LabelSet | None = None) -> None:
        """``label_set``: the robot's classes, if already read from ``labels.label_set``."""
        self.memory, self.segmenter = memory, segmenter
        self.label_cfg = labels or LabelConfig()
        # read once: a bad label-set file fails here, not per revisit
        self.label_set = label_set or LabelSet.from_config(self.label_cfg)
        self._unknown_told: set[int] = set()
        self.level_cfg = levelling or LevellingConfig()
        self.reg_cfg = registration or RegistrationConfig()
        self.drift_cfg = drift or DriftConfig()
        self.assoc_cfg = association or AssociationConfig()
        # read once: a bad model file fails here, not per revisit
        self.confidence = ConfidenceModel.load(self.assoc_cfg.change_confidence)
        self._known: dict[int, Known] | None = None
        # what earlier registered revisits saw, one point per SEEN_VOXEL cell, and
        # the epochs already in it: bounded by the room, not by the revisits
        self._seen = CellTally(SEEN_VOXEL)
        # likewise the structure (points of no object) the registered revisits agree on
        self._structure = StaticStructure(STRUCTURE_VOXEL,
                                          agree=self.reg_cfg.structure_agreement)
        self._merged: set[int] = set()      # the epochs in both

    # --- what the map knows ---------------------------------------------------------

    def _reference(self) -> np.ndarray | None:
        """Map points to register against, None before the first revisit: the
        static structure the registered revisits agree on (walls, floor, anything
        not an object; one point per ``STRUCTURE_VOXEL`` cell, bounded by the
        room, not growing with the revisits: ``structure.py``) and each present
        object's points where it was last seen. Objects that moved are where
        they are now, and removed ones are gone, so the reference holds no
        stale furniture."""
        if not self._merge_registered():
            return None
        present = {o.id for o in self.memory.objects() if o.state == ObjectState.PRESENT}
        objects = [k.points for oid, k in self.known().items() if oid in present]
        return np.concatenate([self._structure.points(), *objects]).astype(np.float32)

    def known(self) -> dict[int, Known]:
        """Each object's view (``association.keeps_view``: its last sighting,
        unless that was a fragment of an earlier one), rebuilt on start from the
        stored observations and epoch points by the rule the mapper applies as
        it goes. Only the epochs holding a view are read."""
        if self._known is None:
            self._known = {}
            objects = {o.id: o for o in self.memory.objects()}
            view: dict[int, tuple[int, ObjectRecord]] = {}    # object -> (epoch, record)
            for epoch in self.memory.epoch_indices():
                for o in self.memory.observations(epoch):
                    kept = view.get(o.id)
                    if kept is None or not keeps_view(
                            kept[1].pose.position, kept[1].extents, kept[1].pose.yaw,
                            kept[1].num_points, o.pose.position, o.num_points):
                        view[o.id] = (epoch, o)
            by_epoch: dict[int, list[int]] = {}
            for oid, (epoch, _) in view.items():
                if oid in objects:
                    by_epoch.setdefault(epoch, []).append(oid)
            stored = set(self.memory.point_epochs(registered=None))
            for epoch in sorted(set(by_epoch) & stored):
                points = self.memory.points(epoch)
                normals = None
                for oid in by_epoch[epoch]:
                    members = np.flatnonzero(points.instance_id == oid)
                    if not len(members):
                        continue
                    if normals is None:
                        normals = estimate_normals(points.xyz, GeometricConfig().normal_radius)
                    self._known[oid] = Known(
                        oid, describe(points.xyz, points.rgb, normals, members),
                        objects[oid].class_id, points.xyz[members],
                        objects[oid].epoch_first_seen)
        return self._known

    # --- one revisit -----------------------------------------------------------------

    def process(self, scan: FusedScan, label: str = "", stamp_ns: int = 0) -> EpochOutcome:
        """Map one revisit's scan (in its odom frame) and commit the result."""
        epoch = self.memory.next_epoch()
        timings: dict[str, float] = {}
        start = time.perf_counter()
        level = level_scan(scan.xyz, self.level_cfg, scan.camera_down)
        scan = scan.transformed(level.levelled_from_input)
        timings["levelling"] = time.perf_counter() - start
        start = time.perf_counter()
        xyz_odom, rgb = scan.xyz, scan.rgb
        reference = self._reference()
        if reference is None:
            transform, ok, fitness, rmse, reason = np.eye(4), True, 1.0, 0.0, "defines the map"
        else:
            result = register_scan(xyz_odom, reference, self.reg_cfg)
            transform, ok = result.map_from_scan, result.success
            fitness, rmse = result.fitness, result.inlier_rmse
            measures = (f"fitness {fitness:.2f}, overlap {result.overlap:.2f}, margin "
                        f"{result.margin:.2f}")
            reason = f"registered ({measures})" if ok else f"{result.reason}; {measures}"
        timings["registration"] = time.perf_counter() - start
        if not ok:
            tried = transform @ level.levelled_from_input
            return self._unregistered(scan, EpochEntry(epoch, False, tried, label, stamp_ns,
                                                       fitness, rmse, len(xyz_odom)),
                                      reason, timings, level.note)

        start = time.perf_counter()
        corrections = np.zeros((scan.parts, 3))      # the first revisit defines the map
        if reference is not None:
            corrections = bend_onto_map(scan, transform, reference, self.drift_cfg)
        xyz = place(scan, transform, corrections).astype(np.float32)
        if scan.parts:
            transform = corrected(transform, corrections[0])   # at the start odometry is exact
        transform = transform @ level.levelled_from_input     # from the input's own frame
        timings["drift"] = time.perf_counter() - start
        entry = EpochEntry(epoch, True, transform, label, stamp_ns, fitness, rmse, len(xyz))
        start = time.perf_counter()
        # a segmenter with a window reads the stored epochs in it
        seg = self._labelled(xyz, scan, self.segmenter.segment(xyz, rgb,
                                                               history=self._history()))
        timings["segmentation"] = time.perf_counter() - start

        start = time.perf_counter()
        objects, changes, ids, candidates = self._update(epoch, xyz, seg)
        instance_id, class_id = _point_labels(seg, ids)
        timings["association"] = time.perf_counter() - start

        start = time.perf_counter()
        self.memory.commit_epoch(entry, objects, changes,
                                 EpochPoints(xyz, rgb, instance_id, class_id))
        timings["memory"] = time.perf_counter() - start
        return EpochOutcome(epoch, True, transform, reason, instance_id, class_id,
                            objects, changes, timings, level.note,
                            0 if reference is None else len(reference), candidates)

    def _unregistered(self, scan: FusedScan, entry: EpochEntry, reason: str,
                      timings: dict[str, float], levelling: str) -> EpochOutcome:
        """Record a revisit that could not be registered: its scan, segmented
        alone in its own levelled frame (classes only, no identities), is
        stored for inspection; objects, changes and the map stay as they were."""
        start = time.perf_counter()
        seg = self._labelled(scan.xyz, scan, self.segmenter.segment(scan.xyz, scan.rgb))
        instance_id, class_id = _point_labels(seg, [0] * len(seg.segments))
        timings["segmentation"] = time.perf_counter() - start
        self.memory.commit_epoch(entry, points=EpochPoints(scan.xyz, scan.rgb, instance_id,
                                                           class_id))
        return EpochOutcome(entry.index, False, entry.map_from_odom, reason, instance_id,
                            class_id, timings=timings, levelling=levelling)

    def _labelled(self, xyz: np.ndarray, scan: FusedScan, seg):
        """The segmentation as the robot's 2D labels correct and name it, if it
        sent any (``xyz``: the scan's points where they were segmented)."""
        if scan.labels is None:
            return seg
        unknown = set(unknown_labels(scan.labels, self.label_set)) - self._unknown_told
        if unknown:
            self._unknown_told |= unknown
            log.warning("label ids %s are not in the label set %s: their votes are ignored",
                        sorted(unknown), self.label_set.source)
        return apply_labels(seg, xyz, scan.rgb, scan.labels, scan.label_share, self.label_set,
                            self.label_cfg)

    def _history(self) -> list[EpochPoints]:
        """The stored segmented clouds of the registered epochs the segmenter
        looks at (its ``window`` newest), oldest first; none for a window of 0."""
        if not self.segmenter.window:
            return []
        history = []
        for epoch in self.memory.point_epochs(registered=True, last=self.segmenter.window):
            history.append(self.memory.points(epoch))
            self._merge(epoch, history[-1])
        return history

    def _merge(self, epoch: int, points: EpochPoints) -> None:
        """Merge a registered epoch into what revisits saw and into the map's
        structure, once."""
        if epoch not in self._merged:
            self._merged.add(epoch)
            self._seen.add(points.xyz)
            self._structure.add(points.xyz[points.instance_id == 0], points.xyz)

    def _merge_registered(self) -> bool:
        """Merge every registered epoch not merged yet (each is read once);
        whether any is merged."""
        for epoch in self.memory.point_epochs(registered=True):
            if epoch not in self._merged:
                self._merge(epoch, self.memory.points(epoch))
        return bool(self._merged)

    def _seen_before(self) -> np.ndarray | None:
        """Where earlier registered revisits saw anything (map frame; one point
        per 2 cm cell, finer than the 5 cm cells ``EmptyPlaces`` asks about), or
        None at the start. Each epoch is read once and merged in, so a revisit
        reads only the epoch it has not seen yet, and the union stays the size of
        the room however many revisits there were."""
        return self._seen.points if self._merge_registered() else None

    def _update(self, epoch: int, xyz: np.ndarray, seg):
        """New object states, change events, the persistent id of each segment,
        and how many known objects they were matched against."""
        known = self.known()
        stored = {o.id: o for o in self.memory.objects()}
        active = [k for k in known.values()
                  if stored.get(k.id) and stored[k.id].state != ObjectState.REMOVED]
        # seen once and missed since: matched again only where it stood
        settled = frozenset(k.id for k in active
                            if forgotten(stored[k.id], epoch, self.assoc_cfg))
        proposed, back = None, frozenset()
        if seg.identities is not None:        # the segmenter tracked them (4D model)
            proposed = {i: oid for i, oid in enumerate(seg.identities) if oid in known}
            back = frozenset(proposed.values()) - {k.id for k in active}   # removed before
            active += [known[oid] for oid in sorted(back)]
        assoc = associate(seg.segments, seg.class_ids, xyz, active, self.assoc_cfg,
                          EmptyPlaces(xyz), proposed, in_place_only=back | settled)
        earlier = self._seen_before() if assoc.new else None   # only new segments ask
        seen_before = EmptyPlaces(earlier) if earlier is not None else None
        next_id = max([*stored, 0]) + 1
        ids: list[int] = []
        objects, changes = [], []
        names = class_names(seg)
        for i, (segment, cid, name, score) in enumerate(zip(seg.segments, seg.class_ids, names,
                                                            seg.scores, strict=True)):
            oid, first = assoc.matched.get(i), epoch
            if oid is None:
                oid, next_id = next_id, next_id + 1
            else:
                first = stored[oid].epoch_first_seen
            record = ObjectRecord(oid, cid, name, score, _pose(segment),
                                  tuple(float(e) for e in segment.extents),
                                  len(segment.points), first, epoch,
                                  objectness=None if seg.objectness is None
                                  else seg.objectness[i])
            if i in assoc.matched:
                before = stored[oid]
                if oid in assoc.moved and not is_fixture(before.class_id):
                    self._report(changes, ChangeRecord(ChangeKind.MOVED, oid, cid, name, epoch,
                                                       before.pose, record.pose), record)
                relabel = (cid, name) != (before.class_id, before.class_name)
                if relabel and seg.confidence(i) < 0.6:
                    record = replace(record, class_id=before.class_id,   # not sure enough
                                     class_name=before.class_name)
                elif relabel:
                    changes.append(ChangeRecord(ChangeKind.RELABELLED, oid, cid, name,
                                                epoch, before.pose, record.pose,
                                                before.class_id, score))
            # an addition only where an earlier revisit saw the place empty; elsewhere
            # (and in the first revisit, which nothing came before) the object is
            # seen for the first time, or was missed before
            elif seen_before is not None and seen_before.empty(segment, self.assoc_cfg):
                self._report(changes, ChangeRecord(ChangeKind.ADDED, oid, cid, name, epoch,
                                                   current_pose=record.pose), record)
            ids.append(oid)
            objects.append(record)
            kept = known.get(oid)
            if kept is not None and keeps_view(kept.segment.centroid, kept.segment.extents,
                                               kept.segment.yaw, len(kept.points),
                                               segment.centroid, len(segment.points)):
                known[oid] = replace(kept, class_id=record.class_id)   # a fragment of it
            else:
                known[oid] = Known(oid, segment, record.class_id, xyz[segment.points], first)
        for oid in assoc.missing:
            before = stored[oid]
            if before.state == ObjectState.REMOVED:     # proposed back, but not taken
                continue
            state = ObjectState.UNOBSERVED
            # its place was seen empty: gone, if its evidence makes that likely
            if oid in assoc.vacated and self._report(
                    changes, ChangeRecord(ChangeKind.REMOVED, oid, before.class_id,
                                          before.class_name, epoch, before.pose), before):
                state = ObjectState.REMOVED
            objects.append(replace(before, state=state))
        return objects, changes, ids, len(active)


    def _report(self, changes: list[ChangeRecord], change: ChangeRecord,
                evidence: ObjectRecord) -> bool:
        """Add ``change`` with the confidence its object's evidence gives it (the
        segment, or the object as last seen, and the earlier epochs that saw
        it), if that reaches ``association.min_change_confidence``; whether it did."""
        sightings = len(self.memory.history(change.object_id)[0])  # this epoch is not in
        confidence = self.confidence.confidence(change.kind.name.lower(), evidence, sightings)
        if confidence < self.assoc_cfg.min_change_confidence:
            return False
        changes.append(replace(change, confidence=confidence))
        return True


def _point_labels(seg, ids: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per scan point: the id given to its segment (0: none) and its class."""
    instance_id = np.zeros(len(seg.structure), dtype=np.int32)
    class_id = seg.structure.copy()
    for segment, oid, cid in zip(seg.segments, ids, seg.class_ids, strict=True):
        instance_id[segment.points] = oid
        class_id[segment.points] = cid
    return instance_id, class_id


def _pose(segment: Segment) -> Pose:
    return Pose.from_xyz_yaw(*segment.centroid, segment.yaw)
