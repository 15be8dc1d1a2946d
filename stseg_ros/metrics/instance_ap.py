"""3D instance average precision, the ScanNet benchmark protocol.

A faithful port of ScanNet's ``evaluate_semantic_instance.py`` (``evaluate_matches``
and ``compute_averages``) over plain records, so the same routine scores
per-epoch 3D instances and 4D (temporal) instances, which differ only in how
the IoU of a ground-truth/prediction pair is computed:

- IoU thresholds 0.50, 0.55, ..., 0.90 (ScanNet's ``np.arange(0.5, 0.95, 0.05)``)
  for mAP, plus 0.50 (AP50) and 0.25 (AP25); a match needs IoU strictly above.
- Ground-truth instances with fewer than 100 points are ignored, and so are
  predictions with fewer than 100 points.
- Greedy matching per ground truth in order; a second prediction matching an
  already matched ground truth is a false positive with the lower score.
- An unmatched prediction is a false positive unless more than the threshold
  of its points lie on void (no ground-truth instance) or on ignored (small)
  ground truth of its class.
- The precision-recall curve has one point per unique score plus (recall 0,
  precision 1); AP integrates it with ScanNet's step widths. A class without
  ground truth is NaN and left out of the class average; a class with ground
  truth but no prediction scores 0.
"""

from __future__ import annotations

import warnings
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

import numpy as np

MIN_REGION_SIZE = 100
OVERLAPS = np.append(np.arange(0.5, 0.95, 0.05), 0.25)


@dataclass
class Instance:
    """A ground-truth or predicted instance of one scan (3D) or scene (4D)."""

    key: Hashable
    class_id: int
    size: int                   # points, over all epochs for 4D instances
    score: float = 1.0          # predictions: confidence
    void_overlap: int = 0       # predictions: points on void (no ground-truth instance)


@dataclass
class Scan:
    """One unit of matching: its instances and the IoU and intersection of each
    overlapping ground-truth/prediction pair (any class; others are not read)."""

    gt: list[Instance]
    pred: list[Instance]
    iou: dict[tuple[Hashable, Hashable], float] = field(default_factory=dict)
    intersection: dict[tuple[Hashable, Hashable], int] = field(default_factory=dict)


def _class_ap(scans: Iterable[Scan], class_id: int, threshold: float) -> float:
    y_true: list[float] = []
    y_score: list[float] = []
    hard_false_negatives = 0
    has_gt = has_pred = False
    for scan in scans:
        all_gt = [g for g in scan.gt if g.class_id == class_id]
        gts = [g for g in all_gt if g.size >= MIN_REGION_SIZE]
        preds = [p for p in scan.pred if p.class_id == class_id and p.size >= MIN_REGION_SIZE]
        has_gt |= bool(gts)
        has_pred |= bool(preds)
        cur_true = [1.0] * len(gts)
        cur_score = [-np.inf] * len(gts)
        cur_match = [False] * len(gts)
        visited: set = set()
        for gi, g in enumerate(gts):
            found = False
            for p in preds:
                if (g.key, p.key) not in scan.intersection or p.key in visited:
                    continue
                if scan.iou[(g.key, p.key)] > threshold:
                    if cur_match[gi]:
                        # the lower-scored of two matches is a false positive
                        low, high = sorted((cur_score[gi], p.score))
                        cur_score[gi] = high
                        cur_true.append(0.0)
                        cur_score.append(low)
                        cur_match.append(True)
                    else:
                        found = True
                        cur_match[gi] = True
                        cur_score[gi] = p.score
                        visited.add(p.key)
            if not found:
                hard_false_negatives += 1
        keep = [i for i, m in enumerate(cur_match) if m]
        cur_true = [cur_true[i] for i in keep]
        cur_score = [cur_score[i] for i in keep]
        for p in preds:
            overlapping = [g for g in all_gt if (g.key, p.key) in scan.intersection]
            if any(scan.iou[(g.key, p.key)] > threshold for g in overlapping):
                continue
            ignored = p.void_overlap + sum(scan.intersection[(g.key, p.key)]
                                           for g in overlapping if g.size < MIN_REGION_SIZE)
            if ignored / p.size <= threshold:
                cur_true.append(0.0)
                cur_score.append(p.score)
        y_true.extend(cur_true)
        y_score.extend(cur_score)
    if not has_gt:
        return float("nan")
    if not has_pred:
        return 0.0
    return _integrate(np.array(y_true), np.array(y_score), hard_false_negatives)


def _integrate(y_true: np.ndarray, y_score: np.ndarray, hard_false_negatives: int) -> float:
    order = np.argsort(y_score, kind="stable")
    y_score, y_true = y_score[order], y_true[order]
    cumsum = np.cumsum(y_true)
    _, unique_indices = np.unique(y_score, return_index=True)
    n = len(unique_indices) + 1
    precision, recall = np.zeros(n), np.zeros(n)
    num_examples = len(y_score)
    num_true = cumsum[-1] if len(cumsum) else 0
    cumsum = np.append(cumsum, 0)
    for i, idx in enumerate(unique_indices):
        below = cumsum[idx - 1]          # idx 0 reads the appended 0
        tp = num_true - below
        fp = num_examples - idx - tp
        fn = below + hard_false_negatives
        precision[i] = tp / (tp + fp)
        recall[i] = tp / (tp + fn)
    precision[-1], recall[-1] = 1.0, 0.0
    conv = np.concatenate([[recall[0]], recall, [0.0]])
    step_widths = np.convolve(conv, [-0.5, 0, 0.5], "valid")
    return float(np.dot(precision, step_widths))


def class_aps(scans: list[Scan], class_ids: Iterable[int]) -> dict[int, np.ndarray]:
    """Per class, AP at each threshold of ``OVERLAPS`` (NaN: no ground truth)."""
    return {c: np.array([_class_ap(scans, c, th) for th in OVERLAPS]) for c in class_ids}


def summarize(aps: dict[int, np.ndarray]) -> dict[str, float]:
    """mAP (mean over classes and the thresholds 0.50-0.90), AP50 and AP25."""
    if not aps:
        return {"mAP": float("nan"), "AP50": float("nan"), "AP25": float("nan")}
    table = np.stack(list(aps.values()))           # (classes, thresholds)
    main = ~np.isclose(OVERLAPS, 0.25)
    with warnings.catch_warnings():       # all-NaN means no class has ground truth
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"mAP": float(np.nanmean(table[:, main])),
                "AP50": float(np.nanmean(table[:, np.isclose(OVERLAPS, 0.5)])),
                "AP25": float(np.nanmean(table[:, np.isclose(OVERLAPS, 0.25)]))}
