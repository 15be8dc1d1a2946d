"""4D inference speed and peak memory of the learned segmenter.

A generated room (fast mode) gives T revisits; each epoch's cloud (in the map
frame) is thinned to about ``points`` points, and the newest epoch is
segmented jointly with the others as the mapper does, ``repeats`` times after
one warm-up run. Reported: the median seconds of the whole call and of its
network and instance stages, and peak memory (the process's peak resident
set on CPU, PyTorch's peak allocation on CUDA).
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset
from stseg_ros.core.layout import read_cloud, read_epoch_result
from stseg_ros.core.pointcloud import transform_points
from stseg_ros.memory import EpochPoints


def _epochs(seed: int, revisits: int, points: int) -> list[EpochPoints]:
    out = []
    with tempfile.TemporaryDirectory(prefix="stseg-bench-") as tmp:
        generate_dataset(Path(tmp), GenerateConfig(seed=seed, revisits=revisits, frames=0),
                         progress=False)
        rng = np.random.default_rng(seed)
        for t in range(revisits):
            epoch = Path(tmp) / "scene_000" / f"epoch_{t:02d}"
            xyz, rgb = read_cloud(epoch)
            truth = read_epoch_result(epoch, num_points=len(xyz))
            keep = np.sort(rng.choice(len(xyz), min(points, len(xyz)), replace=False))
            xyz = transform_points(truth.map_from_odom, xyz[keep].astype(np.float64))
            out.append(EpochPoints(xyz.astype(np.float32), rgb[keep],
                                   truth.instance_id[keep], truth.class_id[keep]))
    return out


def bench_segmentation(revisits: int = 3, points: int = 100_000, seed: int = 7,
                       repeats: int = 3, device: str = "cpu", backend: str = "torch",
                       weights: Path | None = None) -> dict:
    import torch

    from stseg_ros.learned.segmenter import LearnedSegmenter

    epochs = _epochs(seed, revisits, points)
    seg = LearnedSegmenter(weights, device, backend, joint=True)
    now, past = epochs[-1], epochs[:-1]
    runs = []
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for i in range(repeats + 1):
        # a new scan each run, as each revisit is: the stored epochs' geometric
        # splits are kept between runs, the newest one's is not
        xyz = now.xyz + np.float32(1e-6 * (i + 1))
        start = time.perf_counter()
        result = seg.segment(xyz, now.rgb, history=past)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        total = time.perf_counter() - start
        if i:                                                  # the first run warms up
            runs.append({"total": total, **seg.timings})
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB -> MiB
    median = {k: float(np.median([r[k] for r in runs])) for k in runs[0]}
    return {
        "revisits": revisits, "points_per_epoch": [len(e.xyz) for e in epochs],
        "device": device, "backend": backend,
        "threads": torch.get_num_threads(), "repeats": repeats,
        "seconds": {k: round(v, 3) for k, v in median.items()},
        "objects_found": len(result.segments),
        "peak_rss_mib": round(peak_rss, 1),
        "peak_cuda_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if device.startswith("cuda") else None}


def format_segmentation(r: dict) -> str:
    s = r["seconds"]
    mem = f"peak RSS {r['peak_rss_mib']:.0f} MiB"
    if r["peak_cuda_mib"] is not None:
        mem += f", peak CUDA allocation {r['peak_cuda_mib']:.0f} MiB"
    return (f"4D segmentation of T={r['revisits']} epochs of "
            f"{', '.join(str(n) for n in r['points_per_epoch'])} points on {r['device']} "
            f"({r['backend']} backend, {r['threads']} threads): median {s['total']:.2f} s "
            f"(structure {s['structure']:.2f} s, network {s['network']:.2f} s, "
            f"instances {s['instances']:.2f} s) over "
            f"{r['repeats']} runs; {r['objects_found']} objects in the newest epoch; {mem}")
