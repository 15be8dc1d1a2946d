"""Dataset generation speed: a frame-mode room (the 60 s target for T=3 x 300
frames) and fast-mode scenes (about a second each)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset


def bench_generation(frames: int = 300, revisits: int = 3, fast_scenes: int = 5,
                     seed: int = 0, workers: int = 2, progress: bool = True) -> dict:
    """Wall-clock seconds of both modes, generated into a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="stseg-bench-") as tmp:
        start = time.perf_counter()
        generate_dataset(Path(tmp) / "frames", GenerateConfig(
            seed=seed, revisits=revisits, frames=frames, workers=workers), progress=progress)
        frame_s = time.perf_counter() - start
        start = time.perf_counter()
        generate_dataset(Path(tmp) / "fast", GenerateConfig(
            seed=seed, revisits=revisits, rooms=fast_scenes, frames=0), progress=progress)
        fast_s = time.perf_counter() - start
    return {
        "frame_mode": {"revisits": revisits, "frames_per_revisit": frames,
                       "workers": workers, "seconds": round(frame_s, 2),
                       "frames_per_second": round(revisits * frames / frame_s, 2),
                       "target_seconds": 60.0 if (revisits, frames) == (3, 300) else None},
        "fast_mode": {"scenes": fast_scenes, "revisits": revisits,
                      "seconds_per_scene": round(fast_s / fast_scenes, 3)},
    }
