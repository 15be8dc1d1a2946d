"""Time and memory per revisit over a long history.

One generated room (fast mode) is mapped revisit after revisit with the
default settings, as ``stseg run`` maps it. Per revisit: the seconds of each
mapper stage, the process's resident memory after it, and the object
memory's file size (with its write-ahead log). The segmenter reads a fixed
window of stored epochs and the map's reference grows with the area seen,
not the revisits, so the time of a revisit should stop growing once the
window is full; this bench shows whether it does.
"""

from __future__ import annotations

import os
import resource
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset
from stseg_ros.core.layout import read_cloud
from stseg_ros.mapping.config import SegmentationConfig
from stseg_ros.mapping.drift import FusedScan
from stseg_ros.mapping.pipeline import Mapper
from stseg_ros.memory import ObjectMemory


def _resident_mib() -> float:
    """The process's resident memory now (Linux), else its peak so far."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_history(revisits: int = 30, seed: int = 7, segmenter: str = "learned",
                  progress: bool = True) -> dict:
    """Per revisit: stage seconds, resident MiB, memory file MiB, objects known,
    the map points it was registered to and the objects it was matched against
    (the two things that could grow with the revisits)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="stseg-bench-") as tmp:
        data = Path(tmp) / "room"
        generate_dataset(data, GenerateConfig(seed=seed, revisits=revisits, frames=0),
                         progress=False)
        db = Path(tmp) / "memory.db"
        with ObjectMemory(db) as memory:
            mapper = Mapper(memory, SegmentationConfig(segmenter=segmenter).build())
            for t in tqdm(range(revisits), desc="mapping", unit="revisit",
                          disable=not progress):
                xyz, rgb = read_cloud(data / "scene_000" / f"epoch_{t:02d}")
                start = time.perf_counter()
                outcome = mapper.process(FusedScan.single(xyz, rgb), f"revisit_{t}")
                total = time.perf_counter() - start
                rows.append({"revisit": t + 1, "registered": outcome.registered,
                             "seconds": {"total": round(total, 3),
                                         **{k: round(v, 3) for k, v in outcome.timings.items()}},
                             "resident_mib": round(_resident_mib(), 1),
                             "memory_file_mib": round(sum(
                                 f.stat().st_size for f in Path(tmp).glob("memory.db*")) / 2**20,
                                 2),
                             "objects_known": len(memory.objects()),
                             "reference_points": outcome.reference_points,
                             "matched_against": outcome.candidates})
    return {"revisits": revisits, "seed": seed, "segmenter": segmenter,
            "window": mapper.segmenter.window, "per_revisit": rows,
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def format_history(result: dict, at: tuple[int, ...] = (3, 10, 30)) -> str:
    """The revisits ``at`` (those mapped), one line each, stages in seconds."""
    rows = {r["revisit"]: r for r in result["per_revisit"]}
    stages = list(result["per_revisit"][0]["seconds"]) if rows else []
    lines = [f"{result['segmenter']} segmenter (window {result['window']} stored epochs), "
             f"one fast-mode room of seed {result['seed']}; seconds per stage",
             f"{'revisit':>7} " + " ".join(f"{s:>12}" for s in stages)
             + f" {'resident MiB':>12} {'memory MiB':>10} {'objects':>7}"
               f" {'reference':>9} {'matched against':>15}"]
    for t in [t for t in at if t in rows] or sorted(rows)[-1:]:
        r = rows[t]
        lines.append(f"{t:>7} " + " ".join(f"{r['seconds'].get(s, 0.0):>12.2f}" for s in stages)
                     + f" {r['resident_mib']:>12.0f} {r['memory_file_mib']:>10.1f} "
                       f"{r['objects_known']:>7} {r['reference_points']:>9} "
                       f"{r['matched_against']:>15}")
    lines.append(f"peak resident memory {result['peak_rss_mib']:.0f} MiB")
    return "\n".join(lines)
