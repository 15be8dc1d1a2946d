"""``stseg run``: map a dataset's revisits in order, offline, and write predictions.

Each scene gets its own object memory (``PRED/scene_XXX/memory.db`` unless
``--db`` names one). Epochs already in a memory are not mapped again, so an
interrupted run continues where it stopped; every epoch's prediction files are
written from what the memory stored, which is the same whether the epoch was
just mapped or mapped before the interruption.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from stseg_ros.core.pointcloud import transform_points
from stseg_ros.datasets.layout import (
    ChangeEntry,
    EpochResult,
    InstanceEntry,
    open_dataset,
    read_cloud,
    write_epoch_result,
)
from stseg_ros.mapping.drift import DriftConfig, FragmentFusion, FusedScan
from stseg_ros.mapping.frames import SkippedFrame, read_bag_frames
from stseg_ros.mapping.fusion import FusionConfig, FusionStats
from stseg_ros.mapping.pipeline import Mapper
from stseg_ros.mapping.segmenter import make_segmenter
from stseg_ros.memory import ObjectMemory

LABEL_DISTANCE = 0.05     # m, evaluation points farther than this from the map stay unlabelled


@dataclass
class RunSummary:
    epochs: int = 0
    unregistered: int = 0
    objects: int = 0
    changes: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add_time(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds


def fuse_bag(bag: Path, cfg: FusionConfig | None = None,
             drift: DriftConfig | None = None) -> tuple[FusedScan, FusionStats]:
    """The revisit's scan (in fragments) from its bag, and the fusion statistics."""
    fusion = FragmentFusion(cfg or FusionConfig(), drift or DriftConfig())
    for frame in read_bag_frames(bag):
        if isinstance(frame, SkippedFrame):
            fusion.stats.skip(frame.reason)
        else:
            fusion.integrate(frame)
    return fusion.scan(), fusion.stats


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
                                  seen[i].class_name, int((instance_id == i).sum()))
                 for i in np.unique(instance_id[instance_id > 0]).tolist() if i in seen}
    instance_id[~np.isin(instance_id, list(instances))] = 0
    changes = [ChangeEntry(c.kind.name.lower(), c.object_id, c.class_id)
               for c in memory.changes(epoch)]
    return EpochResult(class_id, instance_id, instances, changes, entry.map_from_odom)


def run_dataset(dataset: Path, out: Path, db: Path | None = None, segmenter: str | None = None,
                log: Callable[[str], None] = print, device: str = "cpu",
                backend: str = "torch", weights: Path | None = None) -> RunSummary:
    dataset, out = Path(dataset), Path(out)
    index = open_dataset(dataset)
    seg = make_segmenter(segmenter, device, backend, weights)
    log(f"segmenter: {seg.name}")
    summary = RunSummary()
    for scene in index.scenes:
        (out / scene).mkdir(parents=True, exist_ok=True)
        db_path = _db_path(db, out, scene, len(index.scenes))
        with ObjectMemory(db_path) as memory:
            mapper = Mapper(memory, seg)
            done = set(memory.epoch_indices())
            for t, name in enumerate(index.epochs(scene)):
                epoch_dir = dataset / scene / name
                eval_xyz, eval_rgb = read_cloud(epoch_dir)
                if t in done:
                    log(f"{scene} {name}: already in {db_path.name}, kept")
                else:
                    _map_epoch(mapper, memory, epoch_dir, eval_xyz, eval_rgb, scene, name, t,
                               summary, log)
                write_epoch_result(out / scene / name,
                                   prediction_from_memory(memory, t, eval_xyz))
            summary.objects += len(memory.objects())
    return summary


def _map_epoch(mapper, memory, epoch_dir, eval_xyz, eval_rgb, scene, name, t, summary, log):
    if memory.next_epoch() != t:
        raise RuntimeError(f"{scene}: memory holds epochs {memory.epoch_indices()}, cannot "
                           f"add {name}; use a fresh --db")
    start = time.perf_counter()
    note = ""
    if (epoch_dir / "bag").is_dir():
        scan, stats = fuse_bag(epoch_dir / "bag")
        note = f", fused {stats.integrated} frames ({stats.dropped} skipped)"
        summary.add_time("fusion", time.perf_counter() - start)
    else:                                   # fast-mode dataset: the scan is given
        scan = FusedScan.single(eval_xyz, eval_rgb)
    outcome = mapper.process(scan, label=name)
    for stage, seconds in outcome.timings.items():
        summary.add_time(stage, seconds)
    summary.epochs += 1
    kinds = Counter(c.kind.name.lower() for c in outcome.changes)
    for kind, n in kinds.items():
        summary.changes[kind] = summary.changes.get(kind, 0) + n
    if not outcome.registered:
        summary.unregistered += 1
        log(f"{scene} {name}: NOT registered ({outcome.reason}); recorded, map unchanged")
        return
    present = sum(1 for o in outcome.objects if o.epoch_last_seen == t)
    what = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "no changes"
    times = ", ".join(f"{k} {v:.1f} s" for k, v in outcome.timings.items())
    log(f"{scene} {name}: {outcome.reason}, {present} objects seen, {what}{note}; {times}")


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
