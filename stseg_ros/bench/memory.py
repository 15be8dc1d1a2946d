"""Object-memory speed: how long the queries the mapper and the query service
ask take on a big memory, and how long a restart takes to answer its first.

A temporary memory gets ``objects`` objects over ``epochs`` epochs (a share of
them removed or unobserved later, as a long-lived map has them), then each
query kind is timed ``repeats`` times and its median reported: by class, by
id, by region (a 2 m x 2 m x 3 m box) and by state (removed). Start-up is
opening a memory of ``startup_epochs`` epochs of ``points`` points each (the
integrity check at open included) and answering one query by class.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from stseg_ros.core.query import ObjectQuery
from stseg_ros.core.records import ObjectRecord, ObjectState, Pose
from stseg_ros.memory import EpochEntry, EpochPoints, ObjectMemory

CLASSES = {3: "door", 5: "chair", 6: "table", 7: "desk", 8: "sofa", 9: "bed", 10: "cabinet",
           11: "shelf", 12: "box", 13: "lamp"}
AREA = 40.0                                 # m, side of the square the objects stand in


def synthetic_epoch(points: int, seed: int, room: tuple[float, float, float] = (8, 6, 3),
                    objects: int = 40) -> EpochPoints:
    """A room-sized cloud with the structure a segmented scan has: colour
    varying with place, instance and class ids in patches."""
    rng = np.random.default_rng(seed)
    xyz = (rng.random((points, 3)) * np.asarray(room)).astype(np.float32)
    cell = (xyz[:, 0] // 1.0).astype(np.int32) * 10 + (xyz[:, 1] // 1.0).astype(np.int32)
    instance = np.where(cell % 3 == 0, cell % objects + 1, 0).astype(np.int32)
    cls = np.where(instance > 0, 3 + instance % 10, 1 + (xyz[:, 2] > 0.05)).astype(np.int32)
    base = np.stack([cell * 37 % 256, cell * 91 % 256, cell * 53 % 256], 1)
    rgb = np.clip(base + rng.normal(0, 6, (points, 3)), 0, 255).astype(np.uint8)
    return EpochPoints(xyz, rgb, instance, cls)


def _object(i: int, epoch: int, rng: np.random.Generator) -> ObjectRecord:
    cls = int(rng.choice(list(CLASSES)))
    x, y = rng.random(2) * AREA
    return ObjectRecord(i, cls, CLASSES[cls], float(rng.random()),
                        Pose.from_xyz_yaw(x, y, 0.4, float(rng.random() * 6.28)),
                        (0.5, 0.5, 0.9), 800, epoch, epoch)


def build_memory(path: Path, objects: int, epochs: int, points: int, seed: int = 0) -> None:
    """``objects`` objects added over ``epochs`` epochs; of those already known at
    an epoch, 2 % are removed and 5 % go unobserved."""
    rng = np.random.default_rng(seed)
    known: dict[int, ObjectRecord] = {}
    per_epoch = -(-objects // epochs)
    with ObjectMemory(path) as memory:
        for t in range(epochs):
            changed = []
            for o in list(known.values()):
                roll = rng.random()
                if o.state != ObjectState.REMOVED and roll < 0.07:
                    state = ObjectState.REMOVED if roll < 0.02 else ObjectState.UNOBSERVED
                    changed.append(replace(o, state=state))
            new = [_object(i, t, rng) for i in range(len(known) + 1,
                                                        min(len(known) + per_epoch, objects) + 1)]
            for o in changed + new:
                known[o.id] = o
            memory.commit_epoch(EpochEntry(t, True, np.eye(4), f"epoch {t}"), changed + new,
                                points=synthetic_epoch(points, t) if points else None)


def _median_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return round(float(np.median(times)) * 1000, 3)


def bench_memory(objects: int = 10_000, epochs: int = 5, startup_epochs: int = 50,
                 points: int = 100_000, repeats: int = 50, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed + 1)
    with tempfile.TemporaryDirectory(prefix="stseg-bench-") as tmp:
        path = Path(tmp) / "objects.db"
        build_memory(path, objects, epochs, 0, seed)
        with ObjectMemory(path) as memory:
            corner = rng.random(2) * (AREA - 2)
            queries = {
                "class": ObjectQuery(class_names={"chair"}),
                "id": ObjectQuery(ids={int(rng.integers(1, objects + 1))}),
                "region": ObjectQuery(region=((*corner, 0.0), (*(corner + 2), 3.0))),
                "state": ObjectQuery(states={ObjectState.REMOVED}),
            }
            query_ms = {k: _median_ms(lambda q=q: memory.objects(q), repeats)
                        for k, q in queries.items()}
            returned = {k: len(memory.objects(q)) for k, q in queries.items()}
            all_ms = _median_ms(memory.objects, max(repeats // 10, 3))
        big = Path(tmp) / "epochs.db"
        build_memory(big, 500, startup_epochs, points, seed)
        size = big.stat().st_size
        start = time.perf_counter()
        with ObjectMemory(big) as memory:
            memory.objects(queries["class"])
            startup = time.perf_counter() - start
    return {"objects": objects, "epochs": epochs, "repeats": repeats,
            "query_ms": query_ms, "returned": returned, "all_objects_ms": all_ms,
            "startup_epochs": startup_epochs, "points_per_epoch": points,
            "startup_ms": round(startup * 1000, 1),
            "startup_file_mb": round(size / 1e6, 1)}


def format_memory(r: dict) -> str:
    lines = [f"object memory of {r['objects']} objects over {r['epochs']} epochs, median of "
             f"{r['repeats']} queries:"]
    for kind, ms in r["query_ms"].items():
        lines.append(f"  by {kind:<7} {ms:7.2f} ms  ({r['returned'][kind]} objects)")
    lines.append(f"  all objects {r['all_objects_ms']:.1f} ms ({r['objects']} objects)")
    lines.append(f"start-up (open + first query) of {r['startup_epochs']} epochs of "
                 f"{r['points_per_epoch']} points ({r['startup_file_mb']} MB): "
                 f"{r['startup_ms']:.0f} ms")
    return "\n".join(lines)
