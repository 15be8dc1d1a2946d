"""``stseg run``: map revisits in order, offline, and write what was found.

Two kinds of input. A dataset directory (``stseg generate``, ``stseg
import``) is mapped scene by scene, and predictions for ``stseg eval`` are
written; each scene gets its own object memory (``PRED/scene_XXX/memory.db``
unless ``--db`` names one). Anything else is a list of inputs read by the
sources (``stseg_ros/sources``): bags, frame folders, cloud files, in the
order given, one history, written as one memory, a labelled PLY per revisit,
the change events and a top view of the map.

Epochs already in a memory are not mapped again, so an interrupted run
continues where it stopped; every output is written from what the memory
stored, which is the same whether the epoch was just mapped or mapped before
the interruption. The settings used are written to ``PRED/config.yaml``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree
from tqdm import tqdm

from stseg_ros.core.layout import (
    LABEL_DISTANCE,
    ChangeEntry,
    EpochResult,
    InstanceEntry,
    open_dataset,
    read_cloud,
    write_epoch_result,
)
from stseg_ros.core.pointcloud import transform_points
from stseg_ros.mapping.config import RunConfig, write_config
from stseg_ros.mapping.drift import FragmentFusion, FusedScan
from stseg_ros.mapping.frames import LabelImage, RgbdFrame, SkippedFrame
from stseg_ros.mapping.fusion import FusionStats
from stseg_ros.mapping.pipeline import EpochOutcome, Mapper
from stseg_ros.memory import ObjectMemory
from stseg_ros.sources import RevisitInput, open_inputs
from stseg_ros.sources.rosbag import RosbagSource


@dataclass
class RunSummary:
    epochs: int = 0
    unregistered: int = 0
    objects: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add_time(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def record(self, outcome: EpochOutcome, what: str, note: str = "") -> str:
        """Count a mapped revisit; returns its line for the log."""
        for stage, seconds in outcome.timings.items():
            self.add_time(stage, seconds)
        self.epochs += 1
        kinds = Counter(c.kind.name.lower() for c in outcome.changes)
        for kind, n in kinds.items():
            self.changes[kind] = self.changes.get(kind, 0) + n
        level = f" [{outcome.levelling}]" if outcome.levelling else ""
        times = ", ".join(f"{k} {v:.1f} s" for k, v in outcome.timings.items())
        if not outcome.registered:
            self.unregistered += 1
            return (f"{what}: NOT registered ({outcome.reason}); recorded, map unchanged"
                    f"{note}{level}")
        present = sum(1 for o in outcome.objects if o.epoch_last_seen == outcome.epoch)
        what_changed = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no changes"
        return (f"{what}: {outcome.reason}, {present} objects seen, {what_changed}{note}"
                f"{level}; {times}")


def fuse_frames(frames: Iterable[RgbdFrame | SkippedFrame | LabelImage], cfg: RunConfig,
                progress: bool = False, what: str = "fusing") -> tuple[FusedScan, FusionStats]:
    """A revisit's scan (in fragments) from its frames, and the fusion statistics:
    frames that cannot be used are counted with their reason, never lost."""
    fusion = FragmentFusion(cfg.fusion, cfg.drift, cfg.labels)
    with tqdm(desc=what, unit="frame", disable=not progress, leave=False) as bar:
        for frame in frames:
            if isinstance(frame, LabelImage):
                fusion.add_labels(frame.stamp_ns, frame.labels, frame.reason)
                continue
            if isinstance(frame, SkippedFrame):
                fusion.stats.skip(frame.reason)
            else:
                fusion.integrate(frame)
            bar.update()
    return fusion.scan(), fusion.stats


def fusion_note(stats: FusionStats) -> str:
    skipped = "; ".join(f"{n} {reason}" for reason, n in stats.skipped.items())
    labels = f", {stats.labels.note()}" if stats.labels is not None else ""
    return f"fused {stats.integrated} frames" + (f" ({stats.dropped} skipped: {skipped})"
                                                 if stats.dropped else "") + labels


def prediction_from_memory(memory: ObjectMemory, epoch: int,
                           eval_xyz_odom: np.ndarray) -> EpochResult:
    """An epoch's prediction files, from the memory, on the evaluation cloud's points."""
    entry = next(e for e in memory.epochs() if e.index == epoch)
    n = len(eval_xyz_odom)
    instance_id, class_id = np.zeros(n, np.int32), np.zeros(n, np.int32)
    points = memory.points(epoch)
    if entry.registered and points is not None and len(points.xyz):
        query = transform_points(entry.map_from_odom, eval_xyz_odom.astype(np.float64))
        dist, idx = cKDTree(points.xyz).query(query, distance_upper_bound=LABEL_DISTANCE)
        hit = np.isfinite(dist)
        instance_id[hit] = points.instance_id[idx[hit]]
        class_id[hit] = points.class_id[idx[hit]]
    seen = {o.id: o for o in memory.observations(epoch)}
    instances = {i: InstanceEntry(i, seen[i].class_id, round(seen[i].score, 4),
                                  seen[i].class_name, int((instance_id == i).sum()),
                                  objectness=_rounded(seen[i].objectness))
                 for i in np.unique(instance_id[instance_id > 0]).tolist() if i in seen}
    instance_id[~np.isin(instance_id, list(instances))] = 0
    changes = [ChangeEntry(c.kind.name.lower(), c.object_id, c.class_id,
                           confidence=round(float(c.confidence), 4))
               for c in memory.changes(epoch)]
    return EpochResult(class_id, instance_id, instances, changes, entry.map_from_odom,
                       registered=entry.registered)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _mapper(memory: ObjectMemory, segmenter, cfg: RunConfig) -> Mapper:
    return Mapper(memory, segmenter, cfg.registration, cfg.association, cfg.drift,
                  cfg.levelling, cfg.labels)


def run_dataset(dataset: Path, out: Path, db: Path | None = None,
                cfg: RunConfig | None = None, log: Callable[[str], None] = print,
                progress: bool = False) -> RunSummary:
    """Map every scene of a dataset directory and write its predictions."""
    dataset, out, cfg = Path(dataset), Path(out), cfg or RunConfig()
    index = open_dataset(dataset)
    seg = cfg.segmentation.build()
    log(f"segmenter: {seg.name}")
    out.mkdir(parents=True, exist_ok=True)
    write_config(out / "config.yaml", cfg)
    summary = RunSummary()
    for scene in index.scenes:
        (out / scene).mkdir(parents=True, exist_ok=True)
        db_path = _db_path(db, out, scene, len(index.scenes))
        with ObjectMemory(db_path) as memory:
            mapper = _mapper(memory, seg, cfg)
            done = set(memory.epoch_indices())
            for t, name in enumerate(index.epochs(scene)):
                epoch_dir = dataset / scene / name
                eval_xyz, eval_rgb = read_cloud(epoch_dir)
                if t in done:
                    log(f"{scene} {name}: already in {db_path.name}, kept")
                else:
                    _check_next(memory, t, f"{scene} {name}")
                    if (epoch_dir / "bag").is_dir():
                        (bag,) = RosbagSource(epoch_dir / "bag", cfg.source,
                                              label_topic=cfg.labels.topic).revisits()
                        scan, note = _scan(bag, cfg, summary, progress)
                    else:                       # fast-mode dataset: the scan is given
                        scan, note = FusedScan.single(eval_xyz, eval_rgb), ""
                    outcome = mapper.process(scan, label=name)
                    log(summary.record(outcome, f"{scene} {name}", note))
                write_epoch_result(out / scene / name,
                                   prediction_from_memory(memory, t, eval_xyz))
            summary.objects += len(memory.objects())
    return summary


def run_inputs(inputs: Sequence[Path], out: Path, db: Path | None = None,
               cfg: RunConfig | None = None, source: str | None = None,
               log: Callable[[str], None] = print, progress: bool = False) -> RunSummary:
    """Map the revisits of bags, frame folders or cloud files (in order) as one
    history; write the memory, a labelled cloud per revisit, the changes and
    the map picture into ``out``."""
    cfg, out = cfg or RunConfig(), Path(out)
    revisits = open_inputs(inputs, source, cfg.source, log, cfg.labels.topic)
    log(f"{len(revisits)} revisit(s): " + ", ".join(f"{r.label} ({r.source})" for r in revisits))
    seg = cfg.segmentation.build()
    log(f"segmenter: {seg.name}")
    out.mkdir(parents=True, exist_ok=True)
    write_config(out / "config.yaml", cfg)
    summary = RunSummary()
    db_path = Path(db) if db is not None else out / "memory.db"
    with ObjectMemory(db_path) as memory:
        mapper = _mapper(memory, seg, cfg)
        stored = {e.index: e for e in memory.epochs()}
        for t, revisit in enumerate(revisits):
            if t in stored:
                if stored[t].label != revisit.label:
                    raise RuntimeError(f"{db_path}: epoch {t} is {stored[t].label!r}, not "
                                       f"{revisit.label!r}; use a fresh --db")
                log(f"{revisit.label}: already in {db_path.name}, kept")
                continue
            _check_next(memory, t, revisit.label)
            scan, note = _scan(revisit, cfg, summary, progress)
            log(summary.record(mapper.process(scan, label=revisit.label), revisit.label, note))
        _write_outputs(memory, out, [r.label for r in revisits])
        summary.objects = len(memory.objects())
    return summary


def _scan(revisit: RevisitInput, cfg: RunConfig, summary: RunSummary,
          progress: bool) -> tuple[FusedScan, str]:
    start = time.perf_counter()
    if revisit.cloud is not None:
        xyz, rgb = revisit.cloud()
        summary.add_time("reading", time.perf_counter() - start)
        return FusedScan.single(xyz, rgb), f", {len(xyz)} points read"
    scan, stats = fuse_frames(revisit.frames(), cfg, progress, revisit.label)
    summary.add_time("fusion", time.perf_counter() - start)
    if not stats.integrated:
        raise RuntimeError(f"{revisit.path}: no frame could be fused ({fusion_note(stats)})")
    if len(scan.xyz) < 100:
        raise RuntimeError(f"{revisit.path}: {fusion_note(stats)}, but they give only "
                           f"{len(scan.xyz)} surface points (a surface needs several views)")
    return scan, ", " + fusion_note(stats)


def _check_next(memory: ObjectMemory, t: int, what: str) -> None:
    if memory.next_epoch() != t:
        raise RuntimeError(f"{what}: memory holds epochs {memory.epoch_indices()}, cannot "
                           f"add it as epoch {t}; use a fresh --db")


def _write_outputs(memory: ObjectMemory, out: Path, labels: list[str]) -> None:
    """``revisits/NN_label.ply`` (x y z rgb instance_id class_id; map frame, or
    for an unregistered revisit its own levelled frame, without object ids),
    ``revisits/NN_label.png`` (the top view of each registered revisit),
    ``changes.json`` and ``map.png``, from the memory."""
    from stseg_ros.importers.ply import write_ply
    from stseg_ros.viz.topview import write_topview

    (out / "revisits").mkdir(exist_ok=True)
    entries = {e.index: e for e in memory.epochs()}
    for t, label in enumerate(labels):
        points = memory.points(t)
        if points is None:
            continue
        write_ply(out / "revisits" / f"{t:02d}_{label}.ply", {
            "x": points.xyz[:, 0], "y": points.xyz[:, 1], "z": points.xyz[:, 2],
            "red": points.rgb[:, 0], "green": points.rgb[:, 1], "blue": points.rgb[:, 2],
            "instance_id": points.instance_id.astype(np.int32),
            "class_id": points.class_id.astype(np.int32)})
        if entries[t].registered:
            seen = len(memory.observations(t))
            write_topview(memory, out / "revisits" / f"{t:02d}_{label}.png", t,
                          f"revisit {t} ({label}): {seen} objects seen; changes: arrow "
                          "moved, + added, crossed box removed")
    events = [{"epoch": c.epoch, "kind": c.kind.name.lower(), "object_id": c.object_id,
               "class_id": c.class_id, "class_name": c.class_name,
               "confidence": round(float(c.confidence), 3)}
              for t in entries for c in memory.changes(t)]
    (out / "changes.json").write_text(json.dumps({"changes": events}, indent=1) + "\n")
    if any(e.registered for e in entries.values()):
        write_topview(memory, out / "map.png", title=f"{len(entries)} revisit(s)")


def _db_path(db: Path | None, out: Path, scene: str, scenes: int) -> Path:
    if db is None:
        return out / scene / "memory.db"
    db = Path(db)
    return db if scenes == 1 else db.with_name(f"{db.stem}_{scene}{db.suffix}")


def write_scene_predictions(dataset: Path, out: Path, scene: str, memory: ObjectMemory) -> int:
    """Prediction files of every epoch of ``scene`` the memory holds (for a
    memory filled elsewhere, e.g. by the ROS nodes); returns how many."""
    dataset, out = Path(dataset), Path(out)
    held = set(memory.epoch_indices())
    written = 0
    for t, name in enumerate(open_dataset(dataset).epochs(scene)):
        if t in held:
            eval_xyz, _ = read_cloud(dataset / scene / name)
            write_epoch_result(out / scene / name, prediction_from_memory(memory, t, eval_xyz))
            written += 1
    return written
