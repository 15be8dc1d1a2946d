"""Score a prediction directory against a dataset (``stseg eval``), or several
pairs of them as one set.

Reads each epoch's ground truth and prediction (``core/layout.py``), reduces
them to point-overlap tables, and computes the keys of the package contract:
per-epoch instance AP (every scene epoch is a scan), t-mAP (every scene is a 4D
scan), change precision/recall/F1, identity switches and registration errors.
Structure classes (wall, floor, ceiling) are not instance classes and are not
scored. A ``ScoringMode`` (``selection.py``) may score a subset of the classes,
or all of them as one class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from stseg_ros.core.layout import EpochResult, FormatError, open_dataset, read_epoch_result
from stseg_ros.metrics.changes import ChangeCounts, EventVerdict, score_epoch_changes
from stseg_ros.metrics.history import HistoryScores, object_histories
from stseg_ros.metrics.instance_ap import class_aps, summarize
from stseg_ros.metrics.overlap import EpochOverlap, pair_counts
from stseg_ros.metrics.registration import relative_error
from stseg_ros.metrics.selection import (
    CLASS_AWARE,
    STRUCTURE_CLASSES,
    ScoringMode,
    describe,
    scoring_class_name,
)
from stseg_ros.metrics.temporal import id_switches, relabel_identical_groups, temporal_scan

METRIC_KEYS = ("mAP", "AP50", "AP25", "t_mAP", "t_AP50", "t_AP25", "change_precision",
               "change_recall", "change_f1", "id_switches", "reg_rot_err_deg",
               "reg_trans_err_m", "reg_refused")


@dataclass
class SceneEvaluation:
    """Everything the metrics need of one scene."""

    name: str
    epochs: list[EpochOverlap]
    truth: list[EpochResult]
    predicted: list[EpochResult]
    groups: list[list[int]] = field(default_factory=list)


def epoch_overlap(truth: EpochResult, predicted: EpochResult,
                  by_objectness: bool = False) -> EpochOverlap:
    """``by_objectness``: rank predictions by their objectness where they give
    one (class-agnostic scoring), else by their score."""
    def rank(e) -> float:
        return float(e.objectness if by_objectness and e.objectness is not None else e.score)

    return EpochOverlap(
        pair_counts(truth.instance_id, predicted.instance_id),
        {i: e.class_id for i, e in truth.instances.items()},
        {i: int(e.class_id) for i, e in predicted.instances.items()},
        {i: rank(e) for i, e in predicted.instances.items()})


def load_scene(dataset: Path, predictions: Path, scene: str, index,
               by_objectness: bool = False) -> SceneEvaluation:
    info = index.scene_info(scene)
    epochs, truths, preds = [], [], []
    for name in index.epochs(scene):
        truth = read_epoch_result(dataset / scene / name)
        pred_dir = predictions / scene / name
        if not pred_dir.is_dir():
            raise FormatError(f"{pred_dir}: missing (the prediction must cover every epoch "
                              "of the dataset)")
        pred = read_epoch_result(pred_dir, num_points=len(truth.instance_id))
        epochs.append(epoch_overlap(truth, pred, by_objectness))
        truths.append(truth)
        preds.append(pred)
    return SceneEvaluation(scene, epochs, truths, preds,
                           [list(map(int, g)) for g in info.get("identical_groups", [])])


def evaluate(dataset: Path, predictions: Path, progress: bool = False,
             mode: ScoringMode = CLASS_AWARE) -> dict:
    """All metrics of a prediction directory, plus per-class and per-revisit details."""
    return evaluate_sets([(dataset, predictions)], progress, mode)


def evaluate_sets(pairs: Sequence[tuple[Path, Path]], progress: bool = False,
                  mode: ScoringMode = CLASS_AWARE) -> dict:
    """``evaluate`` over several (dataset, predictions) pairs scored as one set:
    AP ranks the predictions of all their rooms together, as if one dataset
    held them all (evaluation sets of several seeds). Scene names in the
    details are prefixed with their dataset's directory name when there is
    more than one pair. ``mode`` chooses the classes scored (``selection.py``)
    and is reported under ``mode``."""
    from tqdm import tqdm

    jobs = []
    for dataset, predictions in pairs:
        dataset, predictions = Path(dataset), Path(predictions)
        index = open_dataset(dataset)
        if not predictions.is_dir():
            raise FormatError(f"{predictions}: not a directory")
        jobs += [(dataset, predictions, scene, index) for scene in index.scenes]
    scans, temporal, changes = [], [], ChangeCounts()
    switches = 0
    histories = HistoryScores()
    registration = []
    for dataset, predictions, scene, index in tqdm(jobs, desc="scoring", unit="scene",
                                                   disable=not progress):
        s = load_scene(dataset, predictions, scene, index, mode.class_agnostic)
        name = scene if len(pairs) == 1 else f"{dataset.name}/{scene}"
        sel = mode.select(s.epochs, s.groups)
        scans.extend(e.scan() for e in sel.scored)
        tracked = relabel_identical_groups(sel.scored, sel.groups)
        temporal.append(temporal_scan(tracked))
        histories.add(temporal[-1], object_histories(s.truth, s.groups), STRUCTURE_CLASSES)
        switches += id_switches(tracked)
        for t in range(1, len(s.epochs)):
            counts = score_epoch_changes(s.truth[t].changes, s.predicted[t].changes,
                                         sel.kept[:t + 1], sel.ignored)
            for verdict in counts.verdicts:
                verdict.scene = name
            changes.add(counts)
            rot, trans = relative_error(s.truth[t].map_from_odom, s.truth[0].map_from_odom,
                                        s.predicted[t].map_from_odom,
                                        s.predicted[0].map_from_odom)
            registration.append({"scene": name, "epoch": t, "rot_deg": round(rot, 4),
                                 "trans_m": round(trans, 4),
                                 "registered": s.predicted[t].registered})
    classes = sorted({i.class_id for scan in scans + temporal for i in scan.gt + scan.pred}
                     - STRUCTURE_CLASSES - {0})
    per_epoch, per_4d = class_aps(scans, classes), class_aps(temporal, classes)
    placed = [r for r in registration if r["registered"]]
    flat, flat_t = summarize(per_epoch), summarize(per_4d)
    metrics = {
        "mAP": flat["mAP"], "AP50": flat["AP50"], "AP25": flat["AP25"],
        "t_mAP": flat_t["mAP"], "t_AP50": flat_t["AP50"], "t_AP25": flat_t["AP25"],
        "change_precision": changes.precision, "change_recall": changes.recall,
        "change_f1": changes.f1, "id_switches": switches,
        "reg_rot_err_deg": max((r["rot_deg"] for r in placed), default=0.0),
        "reg_trans_err_m": max((r["trans_m"] for r in placed), default=0.0),
        "reg_refused": len(registration) - len(placed),
    }
    per_class = {}
    for c in classes:
        row = {**summarize({c: per_epoch[c]}), **{f"t_{k}": v for k, v in
                                                   summarize({c: per_4d[c]}).items()}}
        if not all(math.isnan(v) for v in row.values()):
            per_class[scoring_class_name(c)] = row
    metrics["mode"] = mode.report()
    metrics["details"] = {
        "scenes": len(jobs), "epochs": len(scans),
        "changes": {"true_positives": changes.true_positives,
                    "false_positives": changes.false_positives,
                    "false_negatives": changes.false_negatives},
        "change_events": [asdict(v) for v in changes.verdicts],
        "change_reliability": reliability(changes.verdicts),
        "per_class": per_class, "by_history": histories.report(),
        "registration": registration}
    return metrics


CONFIDENCE_BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def reliability(verdicts: Sequence[EventVerdict]) -> list[dict]:
    """Predicted events by confidence bin: how many, their mean confidence,
    and the share that were real. Calibrated confidences have the two close."""
    scored = [v for v in verdicts if v.outcome != "missed" and v.confidence is not None]
    rows = []
    for low, high in zip(CONFIDENCE_BINS, CONFIDENCE_BINS[1:], strict=False):
        inside = [v for v in scored
                  if low <= v.confidence < high or (high == 1.0 and v.confidence == 1.0)]
        if inside:
            rows.append({"low": low, "high": high, "events": len(inside),
                         "mean_confidence": float(np.mean([v.confidence for v in inside])),
                         "share_real": sum(v.outcome == "true" for v in inside) / len(inside)})
    return rows


def format_change_events(metrics: dict) -> str:
    """One line per predicted event (true or false) and per missed true event."""
    lines = []
    for v in metrics.get("details", {}).get("change_events", []):
        confidence = "" if v["confidence"] is None else f" confidence {v['confidence']:.2f}"
        if v["outcome"] == "missed":
            lines.append(f"{v['scene']} epoch {v['epoch']}: missed {v['kind']} of true "
                         f"object {v['truth_id']}")
        else:
            refers = ("no true object" if v["truth_id"] is None
                      else f"true object {v['truth_id']}")
            lines.append(f"{v['scene']} epoch {v['epoch']}: {v['outcome']} {v['kind']} of "
                         f"{v['object_id']} ({refers}){confidence}")
    return "\n".join(lines)


def json_ready(value):
    """NaN becomes null (JSON has no NaN); floats are rounded for people."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ready(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else round(float(value), 6)
    return value


def format_metrics(metrics: dict) -> str:
    """A table for the terminal: the contract keys, then AP per class."""
    def num(v) -> str:
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else (
            f"{v:.4f}" if isinstance(v, float) else str(v))

    lines = [describe(metrics["mode"])] if "mode" in metrics else []
    lines += [f"{k:<18} {num(metrics[k])}" for k in METRIC_KEYS]
    details = metrics.get("details", {})
    per_class = details.get("per_class", {})
    if per_class:
        lines += ["", f"{'class':<16} {'AP':>7} {'AP50':>7} {'AP25':>7} {'t_AP':>7} "
                      f"{'t_AP50':>7} {'t_AP25':>7}"]
        for name, row in per_class.items():
            lines.append(f"{name:<16} " + " ".join(
                f"{num(row[k]):>7}" for k in ("mAP", "AP50", "AP25", "t_mAP", "t_AP50",
                                              "t_AP25")))
    if details.get("by_history"):
        lines += ["", f"{'history':<16} {'objects':>7} {'t_rec50':>7} {'t_IoU':>7}"]
        for kind, row in details["by_history"].items():
            lines.append(f"{kind:<16} {row['objects']:>7} {row['t_recall50']:>7.3f} "
                         f"{row['mean_t_iou']:>7.3f}")
    if details.get("change_reliability"):
        lines += ["", f"{'confidence':<16} {'events':>7} {'mean':>7} {'real':>7}"]
        for row in details["change_reliability"]:
            lines.append(f"{row['low']:.1f}-{row['high']:.1f}{'':<9} {row['events']:>7} "
                         f"{row['mean_confidence']:>7.3f} {row['share_real']:>7.3f}")
    if "changes" in details:
        c = details["changes"]
        lines.append(f"\nchanges: {c['true_positives']} found, {c['false_positives']} false, "
                     f"{c['false_negatives']} missed over {details['epochs']} epochs in "
                     f"{details['scenes']} scene(s)")
    return "\n".join(lines)
