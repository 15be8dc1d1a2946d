"""Registration accuracy and speed over generated revisits (fast-mode scans):
every revisit registered to the first one, errors against the true offsets."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stseg_ros.datasets.generate import GenerateConfig, generate_dataset
from stseg_ros.datasets.layout import read_cloud, read_epoch_result
from stseg_ros.mapping.registration import register_scan
from stseg_ros.metrics.registration import relative_error


def bench_registration(seeds: range, revisits: int = 3, progress: bool = True) -> dict:
    rows = []
    with tempfile.TemporaryDirectory(prefix="stseg-bench-") as tmp:
        for seed in tqdm(seeds, desc="registration", unit="seed", disable=not progress):
            out = Path(tmp) / str(seed)
            generate_dataset(out, GenerateConfig(seed=seed, revisits=revisits, frames=0),
                             progress=False)
            epochs = [out / "scene_000" / f"epoch_{t:02d}" for t in range(revisits)]
            map_xyz, first = read_cloud(epochs[0])[0], read_epoch_result(epochs[0]).map_from_odom
            for t in range(1, revisits):
                truth = read_epoch_result(epochs[t]).map_from_odom
                result = register_scan(read_cloud(epochs[t])[0], map_xyz)
                rot, trans = relative_error(truth, first, result.map_from_scan, np.eye(4))
                rows.append({"seed": seed, "epoch": t, "accepted": result.success,
                             "reason": result.reason, "rot_err_deg": round(rot, 3),
                             "trans_err_m": round(trans, 4), "fitness": round(result.fitness, 3),
                             "seconds": round(result.seconds, 2)})
    accepted = [r for r in rows if r["accepted"]]
    correct = [r for r in rows if r["rot_err_deg"] < 2.0 and r["trans_err_m"] < 0.05]

    def stats(key: str, subset: list[dict]) -> dict:
        values = np.array([r[key] for r in subset]) if subset else np.zeros(1)
        return {"median": float(np.median(values)), "p90": float(np.percentile(values, 90)),
                "max": float(values.max())}

    return {
        "revisits": len(rows), "accepted": len(accepted), "within_target": len(correct),
        "accepted_but_wrong": sum(1 for r in accepted if r not in correct),
        "rejected_but_right": sum(1 for r in correct if not r["accepted"]),
        "rot_err_deg": stats("rot_err_deg", rows), "trans_err_m": stats("trans_err_m", rows),
        "seconds": stats("seconds", rows), "rows": rows}
