"""Point overlaps between ground-truth and predicted instances of one epoch.

Everything the metrics need from the per-point labels of an epoch is a table
of counts per (ground-truth id, predicted id) pair, id 0 meaning "none", so
the labels are read once and the table relabelled cheaply afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from stseg_ros.metrics.instance_ap import Instance, Scan


def pair_counts(gt_ids: np.ndarray, pred_ids: np.ndarray) -> dict[tuple[int, int], int]:
    """Number of points per (gt id, pred id) pair, including id 0 (none)."""
    if len(gt_ids) != len(pred_ids):
        raise ValueError(f"{len(gt_ids)} ground-truth labels but {len(pred_ids)} predicted")
    gt = np.asarray(gt_ids, dtype=np.int64)
    pred = np.asarray(pred_ids, dtype=np.int64)
    if len(gt) and (gt.min() < 0 or pred.min() < 0 or max(gt.max(), pred.max()) >= 1 << 31):
        raise ValueError("instance ids must be in 0..2**31-1")
    keys, counts = np.unique((gt << 32) | pred, return_counts=True)
    return {(int(k >> 32), int(k & 0xFFFFFFFF)): int(n)
            for k, n in zip(keys.tolist(), counts.tolist(), strict=True)}


@dataclass
class EpochOverlap:
    """One epoch of one scene: labels reduced to pair counts, plus instance metadata."""

    counts: dict[tuple[int, int], int]
    gt_class: dict[int, int]
    pred_class: dict[int, int]
    pred_score: dict[int, float]
    gt_size: dict[int, int] = field(init=False)
    pred_size: dict[int, int] = field(init=False)

    def __post_init__(self) -> None:
        self.gt_size, self.pred_size = {}, {}
        for (g, p), n in self.counts.items():
            if g:
                self.gt_size[g] = self.gt_size.get(g, 0) + n
            if p:
                self.pred_size[p] = self.pred_size.get(p, 0) + n

    def intersection(self, g: int, p: int) -> int:
        return self.counts.get((g, p), 0)

    def void(self, p: int) -> int:
        return self.counts.get((0, p), 0)

    def iou(self, g: int, p: int) -> float:
        inter = self.intersection(g, p)
        union = self.gt_size.get(g, 0) + self.pred_size.get(p, 0) - inter
        return inter / union if union else 0.0

    def overlapping(self) -> list[tuple[int, int]]:
        """Pairs of a real gt and a real prediction that share points."""
        return [(g, p) for (g, p) in self.counts if g and p]

    def relabelled(self, mapping: dict[int, int]) -> EpochOverlap:
        """The same epoch with ground-truth ids renamed (ids not in mapping kept)."""
        counts: dict[tuple[int, int], int] = {}
        for (g, p), n in self.counts.items():
            key = (mapping.get(g, g), p)
            counts[key] = counts.get(key, 0) + n
        gt_class = {mapping.get(g, g): c for g, c in self.gt_class.items()}
        return EpochOverlap(counts, gt_class, self.pred_class, self.pred_score)

    def voided(self, gt_ids: set[int], pred_ids: set[int]) -> EpochOverlap:
        """The same epoch with these ground-truth ids made void and these predicted
        ids unpredicted (id 0): ignored ground truth, dropped predictions."""
        counts: dict[tuple[int, int], int] = {}
        for (g, p), n in self.counts.items():
            key = (0 if g in gt_ids else g, 0 if p in pred_ids else p)
            counts[key] = counts.get(key, 0) + n
        return EpochOverlap(counts,
                            {g: c for g, c in self.gt_class.items() if g not in gt_ids},
                            {p: c for p, c in self.pred_class.items() if p not in pred_ids},
                            {p: v for p, v in self.pred_score.items() if p not in pred_ids})

    def best_match(self, threshold: float = 0.5) -> dict[int, int]:
        """gt id -> the prediction overlapping it with IoU above ``threshold`` (unique
        for thresholds of 0.5 and more)."""
        out: dict[int, int] = {}
        for g, p in self.overlapping():
            if self.iou(g, p) > threshold:
                out[g] = p
        return out

    def scan(self) -> Scan:
        """This epoch as a 3D instance-matching unit (per-epoch AP)."""
        gt = [Instance(g, self.gt_class.get(g, 0), n) for g, n in self.gt_size.items()]
        pred = [Instance(p, self.pred_class.get(p, 0), n, self.pred_score.get(p, 0.0),
                         self.void(p)) for p, n in self.pred_size.items()]
        pairs = self.overlapping()
        return Scan(gt, pred, {k: self.iou(*k) for k in pairs},
                    {k: self.counts[k] for k in pairs})
