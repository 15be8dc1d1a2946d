"""3RScan: rescans of a room with the dataset's own correspondences.

Per scan folder ``<scan id>/``: ``labels.instances.annotated.v2.ply`` (vertices
with x y z red green blue objectId globalId NYU40 Eigen13 RIO27, faces
skipped) and ``semseg.v2.json`` (``segGroups`` with objectId and label). The
metafile ``3RScan.json`` lists each reference scan with its rescans
(``scans``), per rescan ``transform`` (rescan -> reference, 16 numbers in
column-major order, as the 3RScan library reads them into an Eigen matrix),
``rigid`` (objects that moved: ``instance_reference``, ``instance_rescan``,
``transform``), ``removed`` and ``nonrigid`` (reference instance ids).

4D ids are reference objectIds: a rescan object listed in ``rigid`` takes its
``instance_reference``, any other keeps its objectId, as 3RScan assumes.
Changes between consecutive scans: a rigid object moved when its motion
since the previous scan takes its centre more than 0.1 m or turns it more
than 10 degrees; ``removed`` objects are removed; objects the reference
lacks are added where they first appear; ``nonrigid`` objects are moved but
uncertain (``ambiguous``).

Which frame a ``rigid`` transform works in is not written down beside the
data, so each rescan tries the readings below and keeps the one that best
puts the reference's points of those objects onto the rescan's (recorded in
``epoch.json``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from stseg_ros.core.layout import ChangeEntry, FormatError, read_json
from stseg_ros.core.pointcloud import transform_points
from stseg_ros.importers.common import Epoch, Log, Scan, Scene, pose_of
from stseg_ros.importers.labels import LabelMapper
from stseg_ros.importers.ply import read_ply_vertices

PLY_NAMES = ("labels.instances.annotated.v2.ply", "labels.instances.annotated.ply")
SEMSEG_NAMES = ("semseg.v2.json", "semseg.json")
META = "3RScan.json"
MOVE_M, TURN_DEG = 0.1, 10.0

# readings of a rigid transform M as the object's motion D in the reference frame,
# given S (rescan -> reference): D maps the object's reference points to where the
# rescan has them, in the reference frame
RIGID_READINGS = {
    "reference->rescan frame (3RScan library)": lambda m, s: s @ m,
    "rescan->reference frame": lambda m, s: s @ np.linalg.inv(m),
    "motion in the reference frame": lambda m, s: m,
    "inverse motion in the reference frame": lambda m, s: np.linalg.inv(m),
}
DEFAULT_READING = "reference->rescan frame (3RScan library)"


@dataclass(frozen=True)
class ScanFolder:
    id: str
    folder: Path


def _is_scan(folder: Path) -> bool:
    return any((folder / n).is_file() for n in PLY_NAMES)


def find_scans(sources: list[Path]) -> list[ScanFolder]:
    """Scan folders named by the sources: a scan folder, a file in one, or a
    folder holding scan folders (up to two levels down)."""
    found: dict[str, ScanFolder] = {}
    for source in map(Path, sources):
        if source.is_file():
            if not _is_scan(source.parent):
                raise FormatError(f"{source}: not in a 3RScan scan folder (no {PLY_NAMES[0]} "
                                  "beside it)")
            folders = [source.parent]
        elif source.is_dir():
            folders = [source] if _is_scan(source) else \
                [d for d in sorted(source.iterdir()) if d.is_dir() and _is_scan(d)] or \
                [d for sub in sorted(source.iterdir()) if sub.is_dir()
                 for d in sorted(sub.iterdir()) if d.is_dir() and _is_scan(d)]
            if not folders:
                raise FormatError(f"{source}: no 3RScan scans in it (no folder with "
                                  f"{PLY_NAMES[0]}, also not one or two levels down)")
        else:
            raise FormatError(f"{source}: missing")
        for f in folders:
            found.setdefault(f.resolve().name, ScanFolder(f.resolve().name, f))
    return list(found.values())


def find_meta(scans: list[ScanFolder], meta: Path | None) -> Path:
    if meta is not None:
        if not Path(meta).is_file():
            raise FormatError(f"{meta}: missing")
        return Path(meta)
    tried = []
    for scan in scans:
        for up in list(scan.folder.resolve().parents)[:3]:
            for candidate in (up / META, up / "files" / META):
                if candidate.is_file():
                    return candidate
                tried.append(str(candidate))
    raise FormatError(f"{META} not found (tried {', '.join(dict.fromkeys(tried))}); "
                      "give it with --meta")


def matrix(numbers, where: str) -> np.ndarray:
    """A 3RScan 4x4 transform from its 16 numbers (column-major), translation in m."""
    try:
        m = np.asarray(numbers, dtype=float).reshape(4, 4).T
    except (TypeError, ValueError):
        raise FormatError(f"{where}: a transform must be 16 numbers") from None
    r = m[:3, :3]
    if not np.isfinite(m).all() or not np.allclose(r @ r.T, np.eye(3), atol=1e-3) \
            or not np.allclose(m[3], [0, 0, 0, 1], atol=1e-6):
        raise FormatError(f"{where}: not a rigid transform (rotation not orthonormal or "
                          "last row not 0 0 0 1; 3RScan stores 16 numbers column by column)")
    if np.linalg.norm(m[:3, 3]) > 50.0:            # no room is 50 m across: millimetres
        m[:3, 3] /= 1000.0
    return m


def read_scan(folder: ScanFolder, labels: LabelMapper) -> Scan:
    ply = next(folder.folder / n for n in PLY_NAMES if (folder.folder / n).is_file())
    v = read_ply_vertices(ply)
    missing = [k for k in ("x", "y", "z", "objectId") if k not in v]
    if missing:
        raise FormatError(f"{ply}: vertices lack {', '.join(missing)}")
    xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    notes = [] if ply.name == PLY_NAMES[0] else [f"{ply.name}: the v1 annotation"]
    if all(k in v for k in ("red", "green", "blue")):
        rgb = np.stack([v["red"], v["green"], v["blue"]], axis=1).astype(np.uint8)
    else:
        rgb = np.zeros((len(xyz), 3), np.uint8)
        notes.append(f"{ply.name}: no vertex colours")
    obj = v["objectId"].astype(np.int64)
    raw: dict[int, str] = {}
    semseg = next((folder.folder / n for n in SEMSEG_NAMES if (folder.folder / n).is_file()),
                  None)
    files = [str(ply)]
    if semseg is None:
        notes.append(f"no {SEMSEG_NAMES[0]}: labels from the NYU40 vertex field only")
    else:
        files.append(str(semseg))
        data = read_json(semseg)
        if not isinstance(data, dict) or not isinstance(data.get("segGroups"), list):
            raise FormatError(f"{semseg}: expected a JSON object with 'segGroups' (list)")
        for n, g in enumerate(data["segGroups"]):
            try:
                raw[int(g["objectId"] if "objectId" in g else g["id"])] = str(g["label"])
            except (KeyError, TypeError, ValueError):
                raise FormatError(f"{semseg}: segGroups entry {n} needs objectId (or id) and "
                                  "label") from None
    classes: dict[int, int] = {}
    for o in np.unique(obj[obj > 0]).tolist():
        if "NYU40" in v:
            votes = np.bincount(v["NYU40"][obj == o].astype(np.int64), minlength=41)
            votes[0] = 0
            if votes.any():
                classes[o] = int(votes.argmax())
        if o not in classes:
            classes[o] = labels(raw.get(o, "unknown"))
        raw.setdefault(o, "")
    return Scan(folder.id, xyz, rgb, obj, raw, classes, files, notes)


def _motion(d: np.ndarray, centre: np.ndarray) -> tuple[float, float]:
    """How far a motion takes a centre (m) and how much it turns (deg)."""
    moved = float(np.linalg.norm(d[:3, :3] @ centre + d[:3, 3] - centre))
    cos = (float(np.trace(d[:3, :3])) - 1.0) / 2.0
    return moved, math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def _choose_reading(rigid: dict[int, np.ndarray], s: np.ndarray, ref: Scan, scan: Scan,
                    local_of: dict[int, int]) -> tuple[str, float | None]:
    """The reading of the rigid transforms that best puts the reference's points of
    those objects onto the rescan's: (name, median distance in m)."""
    ref_map = np.asarray(ref.xyz, np.float64)
    scan_map = transform_points(s, np.asarray(scan.xyz, np.float64))
    errors = {name: [] for name in RIGID_READINGS}
    for oid, m in rigid.items():
        p = ref_map[ref.object_id == oid]
        q = scan_map[scan.object_id == local_of.get(oid, -1)]
        if len(p) < 10 or len(q) < 10:
            continue
        tree = cKDTree(q)
        for name, reading in RIGID_READINGS.items():
            errors[name].append(float(np.median(tree.query(transform_points(reading(m, s),
                                                                            p))[0])))
    if not errors[DEFAULT_READING]:
        return DEFAULT_READING, None
    scores = {name: float(np.median(e)) for name, e in errors.items()}
    best = min(scores, key=lambda n: (scores[n], n != DEFAULT_READING))
    return best, scores[best]


def _rescan_info(meta: Path):
    data = read_json(meta)
    if not isinstance(data, list):
        raise FormatError(f"{meta}: expected a list of reference scans")
    reference_of, entries, order = {}, {}, {}
    for n, ref in enumerate(data):
        if not isinstance(ref, dict) or "reference" not in ref:
            raise FormatError(f"{meta}: entry {n} has no 'reference'")
        rid = str(ref["reference"])
        reference_of[rid], order[rid] = rid, [rid]
        for m, rescan in enumerate(ref.get("scans", [])):
            if not isinstance(rescan, dict) or "reference" not in rescan:
                raise FormatError(f"{meta}: entry {n} ({rid}), rescan {m} has no 'reference'")
            sid = str(rescan["reference"])
            reference_of[sid] = rid
            entries[sid] = rescan
            order[rid].append(sid)
    return reference_of, entries, order


def scenes(sources: list[Path], labels: LabelMapper, meta: Path | None = None,
           check_alignment: bool = True, log: Log = print) -> Iterator[Scene]:
    """One scene per reference scan: the reference, then its rescans in 3RScan.json order."""
    found = find_scans(sources)
    meta = find_meta(found, meta)
    reference_of, entries, order = _rescan_info(meta)
    by_id = {s.id: s for s in found}
    rooms: dict[str, list[str]] = {}
    for scan in found:
        if scan.id not in reference_of:
            raise FormatError(f"{scan.folder}: scan {scan.id} is not listed in {meta}")
        rooms.setdefault(reference_of[scan.id], [])
    for rid in rooms:
        if rid not in by_id:
            raise FormatError(f"{meta}: rescans of {rid} are among the sources but the "
                              "reference scan itself is not (its frame and ids are the map's)")
        ids = [i for i in order[rid] if i in by_id]
        yield _scene(rid, [by_id[i] for i in ids], entries, meta, labels, check_alignment, log)


def _scene(rid: str, folders: list[ScanFolder], entries: dict, meta: Path,
           labels: LabelMapper, check_alignment: bool, log: Log) -> Scene:
    ref = read_scan(folders[0], labels)
    ref.check()
    ref_objects = set(ref.objects)
    epochs: list[Epoch] = []
    motions: list[dict[int, np.ndarray]] = []   # per epoch: 4D id -> motion since the reference
    removed_sets: list[set[int]] = []
    for t, folder in enumerate(folders):
        scan = ref if t == 0 else read_scan(folder, labels)
        scan.check()
        for note in scan.notes:
            log(f"{scan.name}: {note}")
        where = f"{meta} (rescan {scan.name})"
        if t == 0:
            s, entry = np.eye(4), {}
            alignment = {"method": "reference scan: the map frame", "verdict": "reference"}
        else:
            entry = entries[scan.name]
            if "transform" not in entry:
                raise FormatError(f"{where}: no 'transform' (a hidden test rescan?)")
            s = matrix(entry["transform"], f"{where} transform")
            alignment = {"method": f"{META} transform (rescan -> reference)",
                         "verdict": "given"}
        ids, how, mapped = _ids(scan, entry, ref_objects, where)
        rigid = {}
        for n, item in enumerate(entry.get("rigid", [])):
            try:
                oid = int(item["instance_reference"])
                rigid[oid] = matrix(item["transform"], f"{where} rigid {n}")
            except (KeyError, TypeError, ValueError):
                raise FormatError(f"{where}: rigid entry {n} needs instance_reference, "
                                  "instance_rescan and transform") from None
        local_of = {oid: obj for obj, oid in ids.items()}
        reading, fit = _choose_reading(rigid, s, ref, scan, local_of) if rigid else \
            (DEFAULT_READING, None)
        motion = {oid: RIGID_READINGS[reading](m, s) for oid, m in rigid.items()}
        removed, nonrigid = (_id_list(entry, key, where) for key in ("removed", "nonrigid"))
        if t and check_alignment:
            from stseg_ros.mapping.registration import assess_alignment

            verdict = assess_alignment(np.asarray(scan.xyz, np.float64),
                                       np.asarray(ref.xyz, np.float64), s)
            alignment.update({"check": "assess_alignment against the reference",
                              "check_reason": verdict.reason,
                              "fitness": round(verdict.fitness, 4),
                              "overlap": round(verdict.overlap, 4),
                              "rmse": round(verdict.rmse, 4)})
        if rigid:
            alignment.update({"rigid_reading": reading,
                              "rigid_fit_m": None if fit is None else round(fit, 4)})
        changes = [] if t == 0 else _changes(
            scan, s, ids, ref, ref_objects, motion, motions[-1], removed, removed_sets[-1],
            nonrigid, epochs, local_of)
        motions.append(motion)
        removed_sets.append(removed)
        counts = {k: sum(1 for c in changes if c.kind == k) for k in ("added", "removed",
                                                                       "moved")}
        extra = ", the reference" if t == 0 else (
            f", {mapped} mapped by rigid; {len(rigid)} rigid, {len(removed)} removed, "
            f"{len(nonrigid)} nonrigid in {META}; changes {counts}; alignment check "
            f"{alignment.get('check_reason', 'skipped')}")
        log(f"{scan.name}: {len(scan.xyz)} points, {len(scan.objects)} objects{extra}")
        epochs.append(Epoch(scan, s, ids, how, changes, alignment,
                            {"import": {"reference": rid, "rigid": sorted(rigid),
                                        "removed": sorted(removed),
                                        "nonrigid": sorted(nonrigid)}}))
    return Scene(rid, "3rscan", epochs, {"metafile": str(meta)})


def _id_list(entry: dict, key: str, where: str) -> set[int]:
    try:
        return {int(i) for i in entry.get(key, [])}
    except (TypeError, ValueError):
        raise FormatError(f"{where}: {key!r} must be a list of instance ids") from None


def _ids(scan: Scan, entry: dict, ref_objects: set[int], where: str):
    """4D id of each of a scan's objects: the reference objectId."""
    to_ref: dict[int, int] = {}
    for n, item in enumerate(entry.get("rigid", [])):
        try:
            to_ref[int(item["instance_rescan"])] = int(item["instance_reference"])
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{where}: rigid entry {n} needs instance_reference and "
                              "instance_rescan") from None
    ids, how = {}, {}
    taken = set(to_ref.values())
    fresh = max([*scan.objects, *ref_objects, *taken, 0]) + 1
    for obj in scan.objects:
        if obj in to_ref:
            oid, rule = to_ref[obj], "rigid"
        elif obj in taken:                 # its id belongs to another object now
            oid, rule = fresh, "renumbered (its objectId is a rigid object's reference id)"
            fresh += 1
        else:
            oid, rule = obj, "same objectId" if obj in ref_objects else "only in this scan"
        ids[obj] = oid
        how[oid] = {"match": rule}
    return ids, how, sum(1 for o in scan.objects if o in to_ref)


def _changes(scan, s, ids, ref, ref_objects, motion, before, removed, removed_before,
             nonrigid, epochs, local_of) -> list[ChangeEntry]:
    """Changes since the previous epoch, from 3RScan's annotation."""
    now = set(ids.values())
    earlier = set().union(*(set(e.ids.values()) for e in epochs))
    in_map = transform_points(s, np.asarray(scan.xyz, np.float64))
    prev = epochs[-1]
    prev_map = prev.points_in_map()
    prev_local = {oid: obj for obj, oid in prev.ids.items()}

    def where_now(oid):
        return pose_of(in_map[scan.object_id == local_of[oid]]) if oid in local_of else None

    def where_before(oid):
        if oid in prev_local:
            return pose_of(prev_map[prev.scan.object_id == prev_local[oid]])
        return None

    changes = []
    for oid in sorted(removed - removed_before):
        if oid in ref_objects:
            changes.append(ChangeEntry("removed", oid, 0, False, where_before(oid), None,
                                       extra={"source": "3RScan.json removed"}))
    for oid in sorted(now):
        if oid in ref_objects:
            if oid in removed_before:
                changes.append(ChangeEntry("added", oid, 0, False, None, where_now(oid),
                                           extra={"source": "back after 3RScan.json removed"}))
        elif oid not in earlier:
            changes.append(ChangeEntry("added", oid, 0, False, None, where_now(oid),
                                       extra={"source": "not in the reference scan"}))
    ref_xyz = np.asarray(ref.xyz, np.float64)
    for oid in sorted(now & ref_objects - removed_before):
        d = motion.get(oid, np.eye(4)) @ np.linalg.inv(before.get(oid, np.eye(4)))
        centre = ref_xyz[ref.object_id == oid]
        centre = before.get(oid, np.eye(4))[:3, :3] @ centre.mean(axis=0) + \
            before.get(oid, np.eye(4))[:3, 3] if len(centre) else np.zeros(3)
        moved, turned = _motion(d, centre)
        if moved > MOVE_M or turned > TURN_DEG:
            changes.append(ChangeEntry("moved", oid, 0, False, where_before(oid), where_now(oid),
                                       extra={"source": "3RScan.json rigid",
                                              "moved_m": round(moved, 3),
                                              "turned_deg": round(turned, 1)}))
        elif oid in nonrigid:
            changes.append(ChangeEntry("moved", oid, 0, True, where_before(oid), where_now(oid),
                                       extra={"source": "3RScan.json nonrigid",
                                              "reason": "deformed, not a rigid move"}))
    return changes
