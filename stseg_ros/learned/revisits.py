"""The robot's own revisits as unlabelled training samples.

Between two registered revisits of a room most of it did not change, and that
needs no labels: a geometric cluster of one revisit (``split_scan``) that
fills the same 20 cm cells as a cluster of another revisit (IoU at least
``min_iou``, each the other's best match) is one unchanged object. The pairs
are free positives for the cross-time contrastive loss and every other
unchanged object of the sample is a negative (the temporal contrast of the
street-view change-detection work, on objects instead of pixels). Clusters
without a partner, structure and moved things carry no id and are ignored.

The revisits are read from object memories (``memory.db`` as ``stseg run``
and the mapper write them): registered epochs' points, already levelled and
in the map frame. Their stored instances and classes are not used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stseg_ros.learned.data import LabelledEpoch, floor_to_zero
from stseg_ros.mapping.geometric import FLOOR, GeometricConfig, split_scan
from stseg_ros.memory import ObjectMemory


@dataclass(frozen=True)
class RevisitConfig:
    cell: float = 0.20          # m, cells compared between revisits (registration error)
    min_iou: float = 0.4        # of two clusters' cells, to call them one unchanged object


def memory_files(paths: list[Path]) -> list[Path]:
    """Memory files named, and the ``memory.db`` files under folders named."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(path.rglob("memory.db"))
        elif path.is_file():
            found.append(path)
        else:
            raise ValueError(f"{path}: no such memory file or folder")
    return found


def load_revisits(paths: list[Path], cfg: RevisitConfig = RevisitConfig(),
                  geometric: GeometricConfig | None = None,
                  progress: bool = True) -> list[list[LabelledEpoch]]:
    """One scene per memory with at least two registered epochs; points carry no
    class (-1) and the id of their unchanged object (0: none)."""
    geometric = geometric or GeometricConfig()
    scenes = []
    for path in tqdm(memory_files(paths), desc="revisits", unit="memory", disable=not progress):
        with ObjectMemory(path) as memory:
            registered = [e.index for e in memory.epochs() if e.registered]
            clouds = [memory.points(t) for t in registered]
        clouds = [c for c in clouds if c is not None and len(c.xyz)]
        if len(clouds) < 2:
            continue
        splits = [split_scan(c.xyz.astype(np.float64), geometric) for c in clouds]
        ids = unchanged_objects([c.xyz for c in clouds], [s.clusters for s in splits], cfg)
        scene = []
        for cloud, split, inst in zip(clouds, splits, ids, strict=True):
            xyz = floor_to_zero(cloud.xyz.copy(), split.structure == FLOOR)
            scene.append(LabelledEpoch(xyz.astype(np.float32), cloud.rgb,
                                       np.full(len(xyz), -1, np.int8), inst))
        scenes.append(scene)
    return scenes


def unchanged_objects(xyzs: list[np.ndarray], clusters: list[np.ndarray],
                      cfg: RevisitConfig = RevisitConfig()) -> list[np.ndarray]:
    """Per epoch, per point: the id of the unchanged object it belongs to (shared
    by the clusters of all epochs linked to it), 0 elsewhere."""
    cells = [_cluster_cells(xyz, c, cfg.cell) for xyz, c in zip(xyzs, clusters, strict=True)]
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def find(key: tuple[int, int]) -> tuple[int, int]:
        while parent.get(key, key) != key:
            key = parent[key]
        return key

    linked: set[tuple[int, int]] = set()
    for a in range(len(cells)):
        for b in range(a + 1, len(cells)):
            for ka, kb in _mutual_matches(cells[a], cells[b], cfg.min_iou):
                parent[find((b, kb))] = find((a, ka))
                linked |= {(a, ka), (b, kb)}
    number = {r: i for i, r in enumerate(sorted({find(k) for k in linked}), start=1)}
    out = []
    for t, labels in enumerate(clusters):
        ids = np.zeros(len(labels), np.int32)
        for k in np.unique(labels[labels > 0]):
            if (t, int(k)) in linked:
                ids[labels == k] = number[find((t, int(k)))]
        out.append(ids)
    return out


def _cluster_cells(xyz: np.ndarray, labels: np.ndarray, cell: float) -> dict[int, set]:
    keys = np.floor(xyz / cell).astype(np.int64)
    return {int(k): set(map(tuple, np.unique(keys[labels == k], axis=0)))
            for k in np.unique(labels[labels > 0])}


def _mutual_matches(a: dict[int, set], b: dict[int, set], min_iou: float):
    """Cluster pairs that are each other's best match, with IoU >= min_iou."""
    if not a or not b:
        return
    ka, kb = list(a), list(b)
    iou = np.array([[len(a[i] & b[j]) / len(a[i] | b[j]) for j in kb] for i in ka])
    for row, col in enumerate(iou.argmax(axis=1)):
        if iou[row, col] >= min_iou and iou[:, col].argmax() == row:
            yield ka[row], kb[col]
