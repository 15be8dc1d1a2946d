"""What every importer shares: the scan and scene records, one class per 4D
object, and writing the dataset (README, "Importing labelled rescans").

An importer reads each scan into a ``Scan`` (points in the scan's own frame,
per point a scan-local object id, per object its raw label and NYU40 class in
that scan), decides per scan its transform into the scene's map and which 4D
id each of its objects is, and the change events since the previous scan
(an ``Epoch``). ``write_dataset`` then gives every 4D object the class most of
its points have over all scans, and writes the files ``stseg generate
--frames 0`` writes, working in ``OUT.partial`` and renaming it at the end.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stseg_ros import __version__
from stseg_ros.core.classes import class_name
from stseg_ros.core.layout import (
    DATASET_FORMAT,
    DATASET_VERSION,
    ChangeEntry,
    EpochResult,
    FormatError,
    InstanceEntry,
    open_dataset,
    read_epoch_result,
    write_cloud,
    write_epoch_result,
    write_json,
)
from stseg_ros.core.pointcloud import transform_points

Log = Callable[[str], None]


@dataclass
class Scan:
    """One labelled scan as read, in its own frame."""

    name: str
    xyz: np.ndarray                      # (N, 3) float
    rgb: np.ndarray                      # (N, 3) uint8
    object_id: np.ndarray                # (N,) int64 scan-local object, 0 = none
    labels: dict[int, str]               # scan-local object -> raw label
    classes: dict[int, int]              # scan-local object -> NYU40 id in this scan
    files: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def check(self) -> None:
        n = len(self.xyz)
        if self.xyz.shape != (n, 3) or self.rgb.shape != (n, 3) or self.object_id.shape != (n,):
            raise FormatError(f"{self.name}: points, colours and labels differ in shape "
                              f"({self.xyz.shape}, {self.rgb.shape}, {self.object_id.shape})")
        if not np.isfinite(self.xyz).all():
            raise FormatError(f"{self.files[0] if self.files else self.name}: "
                              "non-finite coordinates")

    @property
    def objects(self) -> list[int]:
        """Scan-local ids of the objects that have points, ascending."""
        return [int(o) for o in np.unique(self.object_id) if o != 0]


@dataclass
class Epoch:
    """A scan placed in its scene: transform, 4D ids, and changes since the last one."""

    scan: Scan
    map_from_scan: np.ndarray
    ids: dict[int, int]                              # scan-local object -> 4D id
    how: dict[int, dict] = field(default_factory=dict)  # 4D id -> {"match", "overlap", ...}
    changes: list[ChangeEntry] = field(default_factory=list)
    alignment: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)         # more for epoch.json

    def points_in_map(self) -> np.ndarray:
        return transform_points(self.map_from_scan, np.asarray(self.scan.xyz, np.float64))

    def instance_ids(self) -> np.ndarray:
        """The 4D id of every point (0 = none)."""
        local = self.scan.object_id
        out = np.zeros(len(local), dtype=np.int64)
        for obj, oid in self.ids.items():
            out[local == obj] = oid
        return out


@dataclass
class Scene:
    """The scans of one room, in scan order (the first one's frame is the map)."""

    source: str
    kind: str
    epochs: list[Epoch]
    info: dict = field(default_factory=dict)


def pose_of(xyz: np.ndarray) -> dict:
    """Where an object is, for change events and instances: its centroid (yaw 0,
    the extents being axis-aligned)."""
    c = np.asarray(xyz, np.float64).mean(axis=0)
    return {"x": round(float(c[0]), 4), "y": round(float(c[1]), 4), "yaw": 0.0}


def majority_classes(epochs: list[Epoch]) -> dict[int, int]:
    """One class per 4D object: the class most of its points have over all scans
    (ties: the class it had first)."""
    votes: dict[int, Counter] = {}
    order: dict[int, list[int]] = {}
    for epoch in epochs:
        counts = Counter(epoch.scan.object_id[epoch.scan.object_id != 0].tolist())
        for obj, oid in epoch.ids.items():
            cid = int(epoch.scan.classes.get(obj, 0))
            votes.setdefault(oid, Counter())[cid] += counts.get(obj, 0)
            order.setdefault(oid, []).append(cid)
    return {oid: max(v, key=lambda c: (v[c], -order[oid].index(c))) for oid, v in votes.items()}


def epoch_result(epoch: Epoch, classes: dict[int, int]) -> EpochResult:
    """The epoch's ground truth in the prediction format, with the per-scan label,
    class and match of every object as extra fields of its instance entry."""
    scan = epoch.scan
    instance = epoch.instance_ids()
    cls = np.zeros(len(instance), dtype=np.int64)
    in_map = epoch.points_in_map()
    instances: dict[int, InstanceEntry] = {}
    for obj in sorted(epoch.ids, key=lambda o: epoch.ids[o]):
        oid = epoch.ids[obj]
        mask = scan.object_id == obj
        if not mask.any():
            continue
        cid = classes[oid]
        cls[mask] = cid
        pts = in_map[mask]
        extra = {"scan_labels": {"label": scan.labels.get(obj, ""),
                                 "class_id": int(scan.classes.get(obj, 0)),
                                 "class_name": class_name(scan.classes.get(obj, 0)),
                                 "scan_object_id": int(obj)}}
        extra.update(epoch.how.get(oid, {}))
        instances[oid] = InstanceEntry(
            oid, cid, 1.0, class_name(cid), int(mask.sum()), pose_of(pts),
            [round(float(v), 4) for v in pts.max(axis=0) - pts.min(axis=0)], extra=extra)
    for change in epoch.changes:
        change.class_id = classes.get(change.object_id, change.class_id)
    return EpochResult(cls, instance, instances, epoch.changes, epoch.map_from_scan)


@dataclass
class ImportSummary:
    root: Path
    scenes: int = 0
    epochs: int = 0
    points: int = 0
    objects: int = 0
    changes: Counter = field(default_factory=Counter)
    uncertain: int = 0
    unknown_labels: Counter = field(default_factory=Counter)
    alignments: Counter = field(default_factory=Counter)


def _refuse_existing(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; choose a new --out")


def write_dataset(out, kind: str, scenes: Iterable[Scene], info: dict,
                  log: Log = print, unknown_labels: Counter | None = None) -> ImportSummary:
    """Write the scenes (produced one at a time) as a dataset in ``out``.

    ``out`` must not exist or be empty; the work happens in ``<out>.partial``,
    renamed when every scene is written, so an interrupted import never leaves
    something that looks like a finished dataset.
    """
    out = Path(out)
    _refuse_existing(out)
    work = out.with_name(out.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    summary = ImportSummary(out)
    names = []
    try:
        for k, scene in enumerate(scenes):
            name = f"scene_{k:03d}"
            _write_scene(work / name, scene, summary)
            names.append(name)
            summary.scenes += 1
            objects = len({i for e in scene.epochs for i in e.ids.values()})
            log(f"{name} ({scene.source}): {len(scene.epochs)} scan(s), {objects} 4D objects")
        if not names:
            raise FormatError("no scans found in the sources")
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    if unknown_labels:
        summary.unknown_labels.update(unknown_labels)
    write_json(work / "dataset.json", {
        "format": DATASET_FORMAT, "version": DATASET_VERSION,
        "generator": f"stseg_ros {__version__} import {kind}", "importer": kind,
        **info, "frames": 0,
        "unknown_labels": dict(summary.unknown_labels.most_common()),
        "classes": {str(c): class_name(c) for c in range(1, 41)},
        "scenes": names})
    _refuse_existing(out)
    if out.exists():
        out.rmdir()
    work.rename(out)
    open_dataset(out)
    return summary


def _write_scene(scene_dir: Path, scene: Scene, summary: ImportSummary) -> None:
    scene_dir.mkdir()
    classes = majority_classes(scene.epochs)
    write_json(scene_dir / "scene.json", {
        "kind": scene.kind, "source": scene.source, "epochs": len(scene.epochs),
        "scans": [e.scan.name for e in scene.epochs], "identical_groups": [],
        **scene.info})
    for t, epoch in enumerate(scene.epochs):
        out = scene_dir / f"epoch_{t:02d}"
        out.mkdir()
        scan = epoch.scan
        write_cloud(out, scan.xyz, scan.rgb)
        result = epoch_result(epoch, classes)
        write_epoch_result(out, result)
        relabelled = {oid: {"scan": int(scan.classes.get(obj, 0)), "object": classes[oid]}
                      for obj, oid in epoch.ids.items()
                      if int(scan.classes.get(obj, 0)) != classes[oid]}
        write_json(out / "epoch.json", {
            "epoch": t, "scan": scan.name, "files": scan.files, "frames": 0,
            "cloud_points": len(scan.xyz), "objects": len(result.instances),
            "alignment": epoch.alignment, **epoch.info,
            "relabelled": {str(k): v for k, v in sorted(relabelled.items())},
            "notes": scan.notes})
        read_epoch_result(out, num_points=len(scan.xyz))    # what eval will read
        summary.epochs += 1
        summary.points += len(scan.xyz)
        summary.changes.update(c.kind for c in epoch.changes)
        summary.uncertain += sum(c.ambiguous for c in epoch.changes)
        if epoch.alignment.get("verdict"):
            summary.alignments[epoch.alignment["verdict"]] += 1
    summary.objects += len(classes)
