"""Registration accuracy, speed and gate verdicts over generated and real revisits.

Every later revisit of a scene is levelled and registered to the scene's
first, as the mapper does, and compared with the dataset's own alignment
(``transform.json``: the generator's truth, 3RScan's given transforms, or an
importer's alignment for ScanNet). Real revisits are first moved by a random
floor-plane offset (1.5-1.9 m, 60-137 deg), so the registration cannot
profit from scans that were reconstructed nearly aligned. Wrong alignments
must be refused: each scene's first revisit registered to another scene's,
and each correct alignment turned by 90 and 180 degrees (a symmetric room's
classic wrong answers) and judged by the gate.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset
from stseg_ros.core.layout import open_dataset, read_cloud, read_epoch_result
from stseg_ros.core.pointcloud import planar_pose, transform_points
from stseg_ros.mapping.gravity import level_scan
from stseg_ros.mapping.registration import (
    RegistrationConfig,
    assess_alignment,
    register_levelled,
    register_scan,
)
from stseg_ros.metrics.registration import relative_error

ROT_TARGET, TRANS_TARGET = 2.0, 0.05     # deg, m: within these a registration is right


def _levelled(epoch_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A revisit's cloud levelled as the mapper levels it, the levelling and the
    dataset's map_from_odom."""
    xyz = read_cloud(epoch_dir)[0].astype(np.float64)
    level = level_scan(xyz).levelled_from_input
    return transform_points(level, xyz), level, read_epoch_result(epoch_dir).map_from_odom


def _offset(rng: np.random.Generator) -> np.ndarray:
    angle, distance, heading = rng.uniform(60, 137) * rng.choice([-1, 1]), \
        rng.uniform(1.5, 1.9), rng.uniform(0, 2 * math.pi)
    return planar_pose(distance * math.cos(heading), distance * math.sin(heading),
                       math.radians(angle))


def _turn(transform: np.ndarray, xyz: np.ndarray, degrees: float) -> np.ndarray:
    """``transform`` followed by a turn about the vertical through the scan's centre."""
    c = transform_points(transform, xyz).mean(axis=0)
    return (planar_pose(c[0], c[1], 0) @ planar_pose(0, 0, math.radians(degrees))
            @ planar_pose(-c[0], -c[1], 0) @ transform)


def _scene_rows(root: Path, scene: str, epochs: list[str], kind: str, perturb: bool,
                rng: np.random.Generator) -> list[dict]:
    """Register every later revisit of a scene to its first; rows with errors
    and verdicts, and the verdicts on the turned alignments."""
    ref, ref_level, first = _levelled(root / scene / epochs[0])
    rows = []
    for t, name in enumerate(epochs[1:], 1):
        scan, level, truth_odom = _levelled(root / scene / name)
        offset = _offset(rng) if perturb else np.eye(4)
        result = register_scan(transform_points(offset, scan), ref)
        # in the dataset's frames: odom_t -> levelled_t -> offset -> map(levelled_0) -> odom_0
        estimate = np.linalg.inv(ref_level) @ result.map_from_scan @ offset @ level
        rot, trans = relative_error(truth_odom, first, estimate, np.eye(4))
        row = {"kind": kind, "scene": f"{root.name}/{scene}", "epoch": t,
               "accepted": result.success, "reason": result.reason,
               "rot_err_deg": round(rot, 3), "trans_err_m": round(trans, 4),
               "fitness": round(result.fitness, 3), "overlap": round(result.overlap, 3),
               "margin": round(result.margin, 3), "seconds": round(result.seconds, 2)}
        truth = ref_level @ np.linalg.inv(first) @ truth_odom @ np.linalg.inv(level)
        right = assess_alignment(scan, ref, truth).fitness
        row["turned_accepted"] = sum(_would_win(scan, ref, _turn(truth, scan, d), right)
                                     for d in (90, 180))
        rows.append(row)
    return rows


def _would_win(scan: np.ndarray, ref: np.ndarray, wrong: np.ndarray, right: float) -> bool:
    """Whether the gate would accept ``wrong`` over the right alignment (of
    fitness ``right``): its verdict is ok and it fits better by the required
    margin (register_scan compares the turns)."""
    verdict = assess_alignment(scan, ref, wrong)
    return verdict.reason == "ok" and \
        verdict.fitness - right >= RegistrationConfig().min_margin


def _cross_rows(datasets: Sequence[tuple[Path, str, list[str], str]]) -> list[dict]:
    """Each scene's first revisit registered to the next scene's: a different
    room, so any acceptance is wrong."""
    rows = []
    for (root_a, scene_a, ep_a, kind), (root_b, scene_b, ep_b, _) in zip(
            datasets, datasets[1:], strict=False):
        result = register_levelled(read_cloud(root_b / scene_b / ep_b[0])[0],
                                   read_cloud(root_a / scene_a / ep_a[0])[0])
        rows.append({"kind": f"{kind} (different rooms)",
                     "scene": f"{root_a.name}/{scene_a} <- {root_b.name}/{scene_b}",
                     "accepted": result.success, "reason": result.reason,
                     "fitness": round(result.fitness, 3), "overlap": round(result.overlap, 3),
                     "margin": round(result.margin, 3), "seconds": round(result.seconds, 2)})
    return rows


def _scenes(root: Path, kind: str) -> list[tuple[Path, str, list[str], str]]:
    index = open_dataset(root)
    return [(root, s, index.epochs(s), kind) for s in index.scenes if len(index.epochs(s)) > 1]


def bench_registration(seeds: range, revisits: int = 3, real: Sequence[Path] = (),
                       progress: bool = True) -> dict:
    """Generated seeds (fast mode) and real datasets (``stseg import``)."""
    rng = np.random.default_rng(0)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="stseg-bench-") as tmp:
        scenes = []
        for seed in tqdm(seeds, desc="generating", unit="seed", disable=not progress):
            out = Path(tmp) / f"seed{seed}"
            generate_dataset(out, GenerateConfig(seed=seed, revisits=revisits, frames=0),
                             progress=False)
            scenes += _scenes(out, "generated")
        for root in real:
            scenes += _scenes(Path(root), "real")
        for root, scene, epochs, kind in tqdm(scenes, desc="registering", unit="scene",
                                              disable=not progress):
            rows += _scene_rows(root, scene, epochs, kind, kind == "real", rng)
        for kind in ("generated", "real"):
            rows += _cross_rows([s for s in scenes if s[3] == kind])
    return summarize(rows)


def summarize(rows: list[dict]) -> dict:
    """Per kind of data: accepted, refused, accepted-but-wrong, error distribution."""
    out = {"rows": rows}
    for kind in sorted({r["kind"] for r in rows}):
        subset = [r for r in rows if r["kind"] == kind]
        if "different rooms" in kind:
            out[kind] = {"pairs": len(subset), "accepted_but_wrong":
                         sum(r["accepted"] for r in subset)}
            continue
        right = [r for r in subset if r["rot_err_deg"] < ROT_TARGET
                 and r["trans_err_m"] < TRANS_TARGET]
        out[kind] = {
            "revisits": len(subset), "accepted": sum(r["accepted"] for r in subset),
            "within_target": len(right),
            "accepted_but_wrong": sum(r["accepted"] for r in subset if r not in right),
            "rejected_but_right": sum(not r["accepted"] for r in right),
            "turned_accepted": sum(r["turned_accepted"] for r in subset),
            "rot_err_deg": _stats([r["rot_err_deg"] for r in subset]),
            "trans_err_m": _stats([r["trans_err_m"] for r in subset]),
            "fitness": _stats([r["fitness"] for r in right]),
            "seconds": _stats([r["seconds"] for r in subset])}
    return out


def _stats(values: list[float]) -> dict:
    v = np.asarray(values if values else [0.0], dtype=float)
    return {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
            "min": float(v.min()), "max": float(v.max())}


def format_registration(result: dict) -> str:
    lines = []
    for kind, s in result.items():
        if kind == "rows":
            continue
        if "pairs" in s:
            lines.append(f"{kind}: {s['pairs']} pairs, {s['accepted_but_wrong']} accepted "
                         "(each would be wrong)")
            continue
        r, t = s["rot_err_deg"], s["trans_err_m"]
        lines.append(
            f"{kind}: {s['revisits']} revisits, {s['accepted']} accepted, {s['within_target']} "
            f"within {ROT_TARGET:.0f} deg / {TRANS_TARGET * 100:.0f} cm, "
            f"{s['accepted_but_wrong']} accepted but wrong, {s['rejected_but_right']} rejected "
            f"but right, {s['turned_accepted']} turned (90/180 deg) alignments accepted\n"
            f"  rotation error deg: median {r['median']:.2f}, p90 {r['p90']:.2f}, max "
            f"{r['max']:.2f}; translation error m: median {t['median']:.3f}, p90 "
            f"{t['p90']:.3f}, max {t['max']:.3f}\n"
            f"  fitness of right ones: min {s['fitness']['min']:.2f}, median "
            f"{s['fitness']['median']:.2f}; seconds: median {s['seconds']['median']:.1f}, "
            f"max {s['seconds']['max']:.1f}")
    return "\n".join(lines)
