"""4D instances over the epochs of a scene: t-mAP inputs and identity switches.

ReScene4D's temporal IoU: a 4D instance is one id over all epochs; the IoU of
a ground-truth and a predicted 4D instance is the minimum, over the epochs in
which either has points, of their per-epoch IoU (0 where only one exists).

Identical objects (same model, listed in ``scene.json`` as identical groups)
cannot be told apart once they swap places, so before scoring, each epoch's
ground-truth ids inside a group may be permuted to agree best with the
prediction's tracks: any consistent assignment within the group counts as
correct. Ids outside groups are never touched.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from stseg_ros.metrics.instance_ap import Instance, Scan
from stseg_ros.metrics.overlap import EpochOverlap

IDENTITY_BONUS = 0.5    # prefers keeping ids when overlaps tie (overlaps are integers)


def _tracks(epoch: EpochOverlap) -> dict[int, int]:
    """gt id -> the predicted id covering most of its points in this epoch."""
    best: dict[int, tuple[int, int]] = {}
    for g, p in epoch.overlapping():
        n = epoch.intersection(g, p)
        if n > best.get(g, (0, 0))[0]:
            best[g] = (n, p)
    return {g: p for g, (_, p) in best.items()}


def relabel_identical_groups(epochs: list[EpochOverlap],
                             groups: list[list[int]]) -> list[EpochOverlap]:
    """Permute ground-truth ids within identical groups, epoch by epoch, to follow
    the predicted track each id had when last seen (Hungarian on point overlaps)."""
    if not epochs:
        return []
    out = [epochs[0]]
    last_track = _tracks(epochs[0])
    for epoch in epochs[1:]:
        mapping: dict[int, int] = {}
        for group in groups:
            present = [g for g in group if epoch.gt_size.get(g, 0) > 0]
            if not present or len(group) < 2:
                continue
            score = np.zeros((len(present), len(group)))
            for i, g in enumerate(present):
                for j, h in enumerate(group):
                    track = last_track.get(h)
                    score[i, j] = epoch.intersection(g, track) if track else 0.0
                    score[i, j] += IDENTITY_BONUS if g == h else 0.0
            rows, cols = linear_sum_assignment(score, maximize=True)
            mapping.update({present[r]: group[c] for r, c in zip(rows, cols, strict=True)
                            if present[r] != group[c]})
        epoch = epoch.relabelled(mapping) if mapping else epoch
        out.append(epoch)
        last_track.update(_tracks(epoch))
    return out


def temporal_scan(epochs: list[EpochOverlap]) -> Scan:
    """A scene's 4D instances as one matching unit, with temporal IoUs."""
    gt_ids = sorted({g for e in epochs for g in e.gt_size})
    pred_ids = sorted({p for e in epochs for p in e.pred_size})
    gt_class: dict[int, int] = {}
    for e in epochs:
        for g in e.gt_size:
            gt_class.setdefault(g, e.gt_class.get(g, 0))
    gt = [Instance(g, gt_class[g], sum(e.gt_size.get(g, 0) for e in epochs)) for g in gt_ids]
    pred = []
    for p in pred_ids:
        sizes = [(e.pred_size.get(p, 0), e) for e in epochs]
        votes: dict[int, int] = {}
        for n, e in sizes:
            if n:
                votes[e.pred_class.get(p, 0)] = votes.get(e.pred_class.get(p, 0), 0) + n
        total = sum(n for n, _ in sizes)
        score = sum(n * e.pred_score.get(p, 0.0) for n, e in sizes) / total
        pred.append(Instance(p, max(votes, key=votes.get), total, score,
                             sum(e.void(p) for e in epochs)))
    pairs = {k for e in epochs for k in e.overlapping()}
    iou, inter = {}, {}
    for g, p in pairs:
        inter[(g, p)] = sum(e.intersection(g, p) for e in epochs)
        iou[(g, p)] = min(e.iou(g, p) for e in epochs
                          if e.gt_size.get(g, 0) or e.pred_size.get(p, 0))
    return Scan(gt, pred, iou, inter)


def id_switches(epochs: list[EpochOverlap]) -> int:
    """Times a ground-truth object's matched prediction (IoU > 0.5) changes id
    between the epochs in which it is matched."""
    last: dict[int, int] = {}
    switches = 0
    for e in epochs:
        for g, p in e.best_match(0.5).items():
            if g in last and last[g] != p:
                switches += 1
            last[g] = p
    return switches
