"""Write an evolving-room dataset: scenes revisited T times, with ground truth.

Per revisit the robot drives a loop (``trajectory.py``) and either renders RGB-D
frames into a rosbag2 (frame mode), or, in fast mode (``frames=0``), ray-casts
60 low-resolution views with the same sensor model and keeps only the scan,
which is about a second per scene and meant for training. Either way the
evaluation cloud is what the revisit's camera saw, placed with the true poses
(so free of odometry drift, as a fusion that corrects drift would place it) in
the revisit's odom frame, voxelised at 3 cm and labelled per point.

Everything derives from ``numpy.random.default_rng([seed, scene, epoch, ...])``,
so a seed gives the same dataset on any machine and with any number of workers.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stseg_ros import __version__
from stseg_ros.benchmark.bag import RevisitBagWriter
from stseg_ros.benchmark.labels import (
    VARIANTS,
    check_variants,
    label_set_yaml,
    label_topic,
    robot_labels,
)
from stseg_ros.benchmark.render import NoiseBank, SceneRaycaster, render_frame
from stseg_ros.benchmark.scene import Epoch, Scenario, make_scenario
from stseg_ros.benchmark.trajectory import FRAME_RATE, ODOM_PER_FRAME, Trajectory, plan_trajectory
from stseg_ros.core.camera import Intrinsics, backproject
from stseg_ros.core.classes import class_id, class_name
from stseg_ros.core.layout import (
    DATASET_FORMAT,
    DATASET_VERSION,
    ChangeEntry,
    EpochResult,
    InstanceEntry,
    open_dataset,
    write_cloud,
    write_epoch_result,
    write_json,
)
from stseg_ros.core.pointcloud import voxel_downsample
from stseg_ros.core.topics import FRAMES, TOPICS

VOXEL = 0.03               # m, evaluation cloud resolution
FAST_VIEWS = 60            # views per revisit in fast mode
FAST_SCALE = 0.2           # fast-mode image size relative to 640x480 (128x96)
CLOUD_STRIDE = 4           # pixel stride of the points a rendered frame adds to the cloud
START_NS = 1_767_225_600 * 1_000_000_000   # 2026-01-01T00:00:00Z, the first revisit
REVISIT_GAP_NS = 7 * 86_400 * 1_000_000_000  # a week between revisits
CHUNK = 12                 # frames per worker job


@dataclass(frozen=True)
class GenerateConfig:
    seed: int
    revisits: int = 3
    rooms: int = 1
    frames: int = 300      # per revisit; 0 = fast mode (scan only, no bag)
    preview: bool = False
    workers: int = 2       # rendering processes in frame mode; 0 renders in-process
    labels: tuple[str, ...] = ()   # label-image variants written to the bags (labels.py)

    def check(self) -> None:
        if not 1 <= self.revisits <= 100:
            raise ValueError(f"--revisits must be 1..100, got {self.revisits}")
        if not 1 <= self.rooms <= 100_000:
            raise ValueError(f"--rooms must be at least 1, got {self.rooms}")
        if self.frames < 0:
            raise ValueError(f"--frames must be 0 (fast mode) or more, got {self.frames}")
        check_variants(self.labels)
        if self.labels and self.frames == 0:
            raise ValueError("--labels needs frames (bags); fast mode writes no images")


@dataclass
class LabelledPoints:
    xyz: np.ndarray        # (N, 3) float32 in the revisit's odom frame
    rgb: np.ndarray        # (N, 3) uint8
    class_id: np.ndarray   # (N,) int32
    instance_id: np.ndarray

    @classmethod
    def concat(cls, parts: list[LabelledPoints]) -> LabelledPoints:
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("xyz", "rgb", "class_id", "instance_id")))

    def take(self, index: np.ndarray) -> LabelledPoints:
        return LabelledPoints(self.xyz[index], self.rgb[index], self.class_id[index],
                              self.instance_id[index])


@dataclass(frozen=True)
class RenderJob:
    """Frames of one revisit for a worker: camera poses in the map to render from,
    and the same poses in the revisit's odom frame to place the points with."""

    key: tuple[int, ...]
    scenario: Scenario
    epoch: int
    intr: Intrinsics
    true_poses: np.ndarray
    cloud_poses: np.ndarray
    first_frame: int
    stride: int
    keep_images: bool
    labels: tuple[str, ...] = ()


_CACHE: dict[tuple, tuple[SceneRaycaster, NoiseBank]] = {}


def render_job(job: RenderJob) -> list[tuple[np.ndarray | None, np.ndarray | None,
                                             LabelledPoints, dict[str, np.ndarray]]]:
    """Render a job's frames: (colour, depth in mm, labelled points, label image
    per variant) per frame."""
    if job.key not in _CACHE:
        _CACHE.clear()
        epoch = job.scenario.epochs[job.epoch]
        _CACHE[job.key] = (SceneRaycaster(job.scenario, epoch),
                           NoiseBank(np.random.default_rng([*job.key, 7])))
    caster, bank = _CACHE[job.key]
    epoch = job.scenario.epochs[job.epoch]
    out = []
    for k, (true_pose, cloud_pose) in enumerate(zip(job.true_poses, job.cloud_poses,
                                                         strict=True)):
        rng = np.random.default_rng([*job.key, 11, job.first_frame + k])
        frame = render_frame(caster, true_pose, job.intr, epoch, rng, bank)
        depth = np.where(frame.flying, 0.0, frame.depth)
        xyz, flat = backproject(depth, job.intr, cloud_pose, job.stride)
        points = LabelledPoints(xyz.astype(np.float32), frame.color.reshape(-1, 3)[flat],
                                frame.semantic.reshape(-1)[flat],
                                frame.instance.reshape(-1)[flat])
        labels = {v: robot_labels(frame.semantic, frame.instance, VARIANTS[v], job.key[:2],
                                  np.random.default_rng([*job.key, 17, job.first_frame + k]))
                  for v in job.labels}
        if job.keep_images:
            depth_mm = np.round(frame.depth * 1000.0).astype(np.uint16)
            out.append((frame.color, depth_mm, points, labels))
        else:
            out.append((None, None, points, labels))
    return out


def _jobs(key, scenario, epoch, intr, true_poses, cloud_poses, stride, keep,
          labels=()) -> list[RenderJob]:
    return [RenderJob(key, scenario, epoch, intr, true_poses[i:i + CHUNK],
                      cloud_poses[i:i + CHUNK], i, stride, keep, labels)
            for i in range(0, len(true_poses), CHUNK)]


def _pose_dict(p: tuple[float, float, float] | None) -> dict | None:
    return None if p is None else {"x": round(p[0], 4), "y": round(p[1], 4),
                                   "yaw": round(p[2], 4)}


def ground_truth(scenario: Scenario, epoch: Epoch, points: LabelledPoints,
                 trajectory: Trajectory) -> EpochResult:
    """The epoch's ground truth in the prediction format (plus poses and sizes)."""
    counts = dict(zip(*np.unique(points.instance_id, return_counts=True), strict=True))
    instances: dict[int, InstanceEntry] = {}
    for fid, name in ((scenario.door_id, "door"), (scenario.window_id, "window")):
        instances[fid] = InstanceEntry(fid, class_id(name), 1.0, name, int(counts.get(fid, 0)))
    for o in epoch.objects:
        style = scenario.styles[o.style]
        lo, hi = style.bounds()
        instances[o.id] = InstanceEntry(
            o.id, style.class_id, 1.0, style.class_name, int(counts.get(o.id, 0)),
            _pose_dict((o.x, o.y, o.yaw)), [round(float(v), 4) for v in hi - lo])
    changes = [ChangeEntry(c.kind, c.object_id, c.class_id, c.ambiguous,
                           _pose_dict(c.previous), _pose_dict(c.current))
               for c in epoch.changes]
    return EpochResult(points.class_id, points.instance_id, instances, changes,
                       trajectory.map_from_odom)


class DatasetWriter:
    """Generates scenes one revisit at a time; see ``generate_dataset``."""

    def __init__(self, root: Path, cfg: GenerateConfig, progress: bool) -> None:
        self.root, self.cfg = root, cfg
        self.fast = cfg.frames == 0
        self.intr = Intrinsics.default(FAST_SCALE if self.fast else 1.0)
        self.pool: ProcessPoolExecutor | None = None
        self._omp = os.environ.get("OMP_NUM_THREADS")
        if not self.fast and cfg.workers > 0:
            # one OpenMP thread per worker: the workers already fill the cores, and
            # spinning OpenMP threads of several processes fight over them
            os.environ["OMP_NUM_THREADS"] = "1"
            self.pool = ProcessPoolExecutor(cfg.workers,
                                            mp_context=multiprocessing.get_context("spawn"))
        from tqdm import tqdm

        total = cfg.rooms * cfg.revisits * (1 if self.fast else cfg.frames)
        self.bar = tqdm(total=total, unit="epoch" if self.fast else "frame",
                        disable=not progress, dynamic_ncols=True)

    def close(self) -> None:
        self.bar.close()
        if self.pool:
            self.pool.shutdown()
            if self._omp is None:
                os.environ.pop("OMP_NUM_THREADS", None)
            else:
                os.environ["OMP_NUM_THREADS"] = self._omp

    def _map(self, jobs: list[RenderJob]):
        results = self.pool.map(render_job, jobs) if self.pool else map(render_job, jobs)
        for chunk in results:
            yield from chunk

    def scene(self, k: int) -> str:
        cfg = self.cfg
        name = f"scene_{k:03d}"
        scenario = make_scenario(np.random.default_rng([cfg.seed, k]), cfg.revisits)
        scene_dir = self.root / name
        scene_dir.mkdir(parents=True)
        write_json(scene_dir / "scene.json", {
            "kind": scenario.kind, "epochs": len(scenario.epochs),
            "polygon": np.round(scenario.room.polygon, 4).tolist(),
            "height": round(scenario.room.height, 4),
            "door_id": scenario.door_id, "window_id": scenario.window_id,
            "identical_groups": list(scenario.groups().values())})
        for epoch in scenario.epochs:
            self.bar.set_description(f"{name} epoch {epoch.index}")
            self.epoch(scene_dir / f"epoch_{epoch.index:02d}", k, scenario, epoch)
        return name

    def epoch(self, out: Path, k: int, scenario: Scenario, epoch: Epoch) -> None:
        cfg = self.cfg
        key = (cfg.seed, k, epoch.index)
        out.mkdir()
        rng = np.random.default_rng([*key, 1])
        if self.fast:
            traj = plan_trajectory(scenario, epoch, FAST_VIEWS, rng)
            frame_samples = np.arange(FAST_VIEWS)
        else:
            traj = plan_trajectory(scenario, epoch, cfg.frames * ODOM_PER_FRAME, rng)
            frame_samples = np.arange(cfg.frames) * ODOM_PER_FRAME + ODOM_PER_FRAME // 2
        camera_path = traj.camera_poses()
        true_poses = camera_path[frame_samples]
        cloud_poses = np.linalg.inv(traj.map_from_odom) @ true_poses
        stride = 1 if self.fast else CLOUD_STRIDE
        jobs = _jobs(key, scenario, epoch.index, self.intr, true_poses, cloud_poses, stride,
                     not self.fast, cfg.labels)
        if self.fast:
            parts = [p for _, _, p, _ in self._map(jobs)]
            self.bar.update(1)
        else:
            parts = self._write_bag(out / "bag", traj, frame_samples, jobs,
                                    self._start_ns(k, epoch.index))
        points = LabelledPoints.concat(parts)
        points = points.take(voxel_downsample(points.xyz, VOXEL))
        write_cloud(out, points.xyz, points.rgb)
        truth = ground_truth(scenario, epoch, points, traj)
        write_epoch_result(out, truth)
        path = np.linalg.norm(np.diff(traj.base[:, :2], axis=0), axis=1).sum()
        est_end = traj.map_from_odom @ traj.camera_poses(estimated=True)[-1]
        write_json(out / "epoch.json", {
            "epoch": epoch.index, "coverage": round(epoch.coverage, 3),
            "exposure": round(epoch.exposure, 3), "door_angle": round(epoch.door_angle, 3),
            "frames": cfg.frames, "start_stamp_ns": self._start_ns(k, epoch.index),
            "path_length_m": round(float(path), 3), "cloud_points": len(points.xyz),
            "odometry_drift_m": round(float(np.linalg.norm(
                est_end[:3, 3] - camera_path[-1][:3, 3])), 4),
            "camera": {"height_m": round(traj.mount.height, 3),
                       "pitch_deg": round(math.degrees(traj.mount.pitch), 2)}})
        if cfg.preview:
            from stseg_ros.benchmark.preview import write_epoch_preview

            write_epoch_preview(out / "preview.png", scenario, epoch, points, traj, truth)

    def _start_ns(self, k: int, t: int) -> int:
        return START_NS + t * REVISIT_GAP_NS + k * 3_600 * 1_000_000_000

    def _write_bag(self, path: Path, traj: Trajectory, frame_samples: np.ndarray,
                   jobs: list[RenderJob], start: int) -> list[LabelledPoints]:
        dt = int(1e9 / (FRAME_RATE * ODOM_PER_FRAME))
        odom = traj.odometry
        velocity = np.zeros((len(odom), 2))
        steps = np.diff(odom, axis=0)
        velocity[1:, 0] = np.hypot(steps[:, 0], steps[:, 1]) / (dt * 1e-9)
        velocity[1:, 1] = np.arctan2(np.sin(steps[:, 2]), np.cos(steps[:, 2])) / (dt * 1e-9)
        parts: list[LabelledPoints] = []
        frames = self._map(jobs)
        next_frame = iter(frame_samples.tolist())
        pending = next(next_frame, None)
        with RevisitBagWriter(path, self.intr) as bag:
            bag.static_transform(start, traj.mount.base_to_optical())
            for j, (x, y, yaw) in enumerate(odom):
                ns = start + j * dt
                bag.odometry(ns, float(x), float(y), float(yaw), tuple(velocity[j]))
                if j == pending:
                    color, depth_mm, points, labels = next(frames)
                    bag.frame(ns, color, depth_mm)
                    for variant, image in labels.items():
                        bag.labels(ns, label_topic(variant), image)
                    parts.append(points)
                    self.bar.update(1)
                    pending = next(next_frame, None)
        return parts


def generate_dataset(out: Path, cfg: GenerateConfig, progress: bool = True):
    """Write a dataset to ``out`` (which must not exist or be empty); returns its index.

    Work happens in ``<out>.partial`` and is renamed at the end, so an
    interrupted run never leaves something that looks like a finished dataset.
    """
    cfg.check()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; choose a new --out")
    work = out.with_name(out.name + ".partial")
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    writer = DatasetWriter(work, cfg, progress)
    try:
        scenes = [writer.scene(k) for k in range(cfg.rooms)]
    finally:
        writer.close()
    intr = writer.intr
    write_json(work / "dataset.json", {
        "format": DATASET_FORMAT, "version": DATASET_VERSION,
        "generator": f"stseg_ros {__version__}", "seed": cfg.seed, "revisits": cfg.revisits,
        "rooms": cfg.rooms, "frames": cfg.frames, "voxel_size": VOXEL,
        "frame_rate_hz": FRAME_RATE if cfg.frames else None,
        "intrinsics": {"width": intr.width, "height": intr.height, "fx": intr.fx,
                       "fy": intr.fy, "cx": intr.cx, "cy": intr.cy},
        "topics": TOPICS, "frame_ids": FRAMES,
        "classes": {str(c): class_name(c) for c in range(1, 41)},
        "label_topics": {v: label_topic(v) for v in cfg.labels},
        "scenes": scenes})
    if cfg.labels:
        (work / "label_set.yaml").write_text(label_set_yaml())
    if out.exists():
        out.rmdir()
    work.rename(out)
    return open_dataset(out)
