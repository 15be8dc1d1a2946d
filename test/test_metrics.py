"""Metric protocol: hand-computed AP cases and how t-mAP, changes, identity
switches and registration react to edits of a perfect prediction."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset
from stseg_ros.cli import main
from stseg_ros.core.layout import (
    ChangeEntry,
    FormatError,
    open_dataset,
    read_epoch_result,
    write_epoch_result,
)
from stseg_ros.metrics.evaluate import evaluate, evaluate_sets
from stseg_ros.metrics.instance_ap import Instance, Scan, class_aps, summarize

AP_KEYS = ("mAP", "AP50", "AP25", "t_mAP", "t_AP50", "t_AP25")


# --- hand-computed AP (ScanNet protocol) -----------------------------------------

def _scan(gt, pred, pairs):
    """pairs: {(gt key, pred key): (iou, intersection)}"""
    return Scan(gt, pred, {k: v[0] for k, v in pairs.items()},
                {k: v[1] for k, v in pairs.items()})


def test_ap_true_positive_ranked_first_is_perfect():
    scan = _scan([Instance("g", 5, 200)],
                 [Instance("p", 5, 200, 0.9), Instance("q", 5, 150, 0.5)],
                 {("g", "p"): (0.8, 180)})
    assert summarize(class_aps([scan], [5]))["AP50"] == 1.0


def test_ap_false_positive_ranked_first():
    # sorted by score: FP (0.95) above TP (0.9). ScanNet's curve: precision
    # [0.5, 0, 1] at recall [1, 0, 0]; step widths [0.5, 0.5, 0] -> AP 0.25
    scan = _scan([Instance("g", 5, 200)],
                 [Instance("p", 5, 200, 0.9), Instance("q", 5, 150, 0.95)],
                 {("g", "p"): (0.8, 180)})
    assert summarize(class_aps([scan], [5]))["AP50"] == pytest.approx(0.25)


def test_ap_iou_must_exceed_each_threshold():
    # one of two objects found with IoU 0.6: matched at 0.50 and 0.55 only.
    # At a match: precision 1 at recall 0.5 -> AP 0.5; else AP 0.
    scan = _scan([Instance("a", 7, 300), Instance("b", 7, 300)],
                 [Instance("p", 7, 300, 0.8)], {("a", "p"): (0.6, 225)})
    s = summarize(class_aps([scan], [7]))
    assert s["AP50"] == pytest.approx(0.5) and s["AP25"] == pytest.approx(0.5)
    assert s["mAP"] == pytest.approx(0.5 * 2 / 9)


def test_ap_ignores_small_ground_truth_void_and_classes_without_ground_truth():
    scan = _scan(
        [Instance("big", 5, 400), Instance("tiny", 5, 60)],
        [Instance("p", 5, 400, 0.9),
         Instance("on_tiny", 5, 120, 0.8),         # mostly on ignored small ground truth
         Instance("on_wall", 5, 300, 0.7, void_overlap=280),   # mostly on void
         Instance("small_pred", 5, 50, 0.99),      # under 100 points: not a prediction
         Instance("sofa", 6, 300, 0.6)],           # a class with no ground truth
        {("big", "p"): (1.0, 400), ("tiny", "on_tiny"): (0.4, 60)})
    aps = class_aps([scan], [5, 6])
    assert math.isnan(aps[6][0])
    assert summarize(aps) == {"mAP": 1.0, "AP50": 1.0, "AP25": 1.0}


def test_ap_ground_truth_without_predictions_scores_zero():
    scan = _scan([Instance("g", 5, 200)], [], {})
    assert summarize(class_aps([scan], [5]))["AP50"] == 0.0


# --- whole-dataset behaviour -------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("metrics") / "ds"
    generate_dataset(out, GenerateConfig(seed=0, revisits=3, frames=0), progress=False)
    return out


@pytest.fixture
def prediction(dataset, tmp_path):
    """A copy of the ground truth holding only the prediction files."""
    out = tmp_path / "pred"
    index = open_dataset(dataset)
    for scene in index.scenes:
        for epoch in index.epochs(scene):
            dst = out / scene / epoch
            dst.mkdir(parents=True)
            for name in ("labels.npz", "instances.json", "changes.json", "transform.json"):
                shutil.copy(dataset / scene / epoch / name, dst / name)
    return out / "scene_000"


def _edit(epoch_dir, edit):
    result = read_epoch_result(epoch_dir)
    edit(result)
    write_epoch_result(epoch_dir, result)


def _well_seen(dataset, ids=None, min_points=400):
    """Ids of objects with many points in every epoch (optionally among ``ids``)."""
    index = open_dataset(dataset)
    seen = None
    for epoch in index.epochs("scene_000"):
        truth = read_epoch_result(dataset / "scene_000" / epoch)
        ok = {i for i, e in truth.instances.items() if (e.num_points or 0) >= min_points}
        seen = ok if seen is None else seen & ok
    return sorted(seen if ids is None else seen & set(ids))


def _swap_ids(a, b):
    def edit(r):
        ia, ib = r.instance_id == a, r.instance_id == b
        r.instance_id[ia], r.instance_id[ib] = b, a
        r.instances[a].class_id, r.instances[b].class_id = (r.instances[b].class_id,
                                                            r.instances[a].class_id)
    return edit


def test_perfect_prediction_scores_one(dataset, prediction):
    m = evaluate(dataset, prediction.parent)
    assert all(m[k] == 1.0 for k in AP_KEYS)
    assert (m["change_precision"], m["change_recall"], m["change_f1"]) == (1.0, 1.0, 1.0)
    assert m["id_switches"] == 0 and m["reg_rot_err_deg"] == 0 and m["reg_trans_err_m"] == 0
    assert m["details"]["changes"]["true_positives"] > 0


def test_swapping_two_different_objects_in_one_epoch_lowers_t_map_only(dataset, prediction):
    groups = json.loads((dataset / "scene_000" / "scene.json").read_text())["identical_groups"]
    grouped = {i for g in groups for i in g}
    a, b = [i for i in _well_seen(dataset) if i not in grouped][:2]
    _edit(prediction / "epoch_01", _swap_ids(a, b))
    m = evaluate(dataset, prediction.parent)
    assert m["mAP"] == 1.0 and m["AP50"] == 1.0           # each epoch is still perfect
    assert m["t_mAP"] < 1.0 and m["t_AP50"] < 1.0
    assert m["id_switches"] == 4                          # a: pa, pb, pa; b likewise


def _drop(a):
    def edit(r):
        r.instance_id[r.instance_id == a] = 0
        del r.instances[a]
    return edit


def test_dropping_an_object_in_one_epoch_lowers_t_map(dataset, prediction):
    _edit(prediction / "epoch_02", _drop(_well_seen(dataset)[0]))
    m = evaluate(dataset, prediction.parent)
    assert m["t_mAP"] < 1.0 and m["t_AP25"] < 1.0


def test_swap_within_identical_group_is_not_penalised(dataset, prediction):
    groups = json.loads((dataset / "scene_000" / "scene.json").read_text())["identical_groups"]
    pair = next(g for g in ([_well_seen(dataset, g)] for g in groups) if len(g[0]) >= 2)[0]
    a, b = pair[:2]
    for t in (1, 2):          # the prediction tracks them the other way round from epoch 1
        _edit(prediction / f"epoch_{t:02d}", _swap_ids(a, b))
    m = evaluate(dataset, prediction.parent)
    assert all(m[k] == 1.0 for k in AP_KEYS)
    assert m["id_switches"] == 0


def test_change_metrics_react_to_missing_and_extra_events(dataset, prediction):
    truth = read_epoch_result(dataset / "scene_000" / "epoch_01")
    real = [c for c in truth.changes if not c.ambiguous]
    assert real, "the fixture scene must change between epochs 0 and 1"

    def miss(r):
        r.changes.remove(next(c for c in r.changes if not c.ambiguous))
    _edit(prediction / "epoch_01", miss)
    m = evaluate(dataset, prediction.parent)
    assert m["change_recall"] < 1.0 and m["change_precision"] == 1.0

    unmoved = next(i for i in _well_seen(dataset)
                   if not any(c.object_id == i for c in truth.changes))

    def extra(r):
        r.changes.append(ChangeEntry("moved", unmoved))
    _edit(prediction / "epoch_01", extra)
    m = evaluate(dataset, prediction.parent)
    assert m["change_precision"] < 1.0


def test_registration_error_is_relative_to_the_first_revisit(dataset, prediction):
    gauge = np.eye(4)
    gauge[:3, 3] = (5.0, -2.0, 0.3)              # any map frame the predictor chose
    for t in range(3):
        _edit(prediction / f"epoch_{t:02d}",
              lambda r: setattr(r, "map_from_odom", gauge @ r.map_from_odom))
    m = evaluate(dataset, prediction.parent)
    assert m["reg_rot_err_deg"] == pytest.approx(0, abs=1e-4)
    assert m["reg_trans_err_m"] == pytest.approx(0, abs=1e-4)

    def perturb(r):
        c, s = math.cos(math.radians(2)), math.sin(math.radians(2))
        delta = np.eye(4)
        delta[:2, :2] = [[c, -s], [s, c]]
        delta[:3, 3] = (0.1, 0.0, 0.0)
        r.map_from_odom = r.map_from_odom @ delta
    _edit(prediction / "epoch_02", perturb)
    m = evaluate(dataset, prediction.parent)
    assert m["reg_rot_err_deg"] == pytest.approx(2.0, abs=1e-3)
    assert m["reg_trans_err_m"] == pytest.approx(0.1, abs=1e-3)


def test_a_refused_revisit_is_counted_not_scored_as_a_registration_error(dataset, prediction):
    """A revisit the predictor would not place keeps some transform; its error
    is not the registration's, and the count of refused revisits says so."""
    def refuse(r):
        r.map_from_odom = np.diag([-1.0, -1.0, 1.0, 1.0]) @ r.map_from_odom   # 180 deg off
        r.registered = False
    _edit(prediction / "epoch_01", refuse)
    assert read_epoch_result(prediction / "epoch_01").registered is False
    m = evaluate(dataset, prediction.parent)
    assert m["reg_refused"] == 1
    assert m["reg_rot_err_deg"] == pytest.approx(0, abs=1e-4)
    rows = {r["epoch"]: r for r in m["details"]["registration"]}
    assert not rows[1]["registered"] and rows[1]["rot_deg"] == pytest.approx(180, abs=1e-3)
    assert rows[2]["registered"]

    transform = prediction / "epoch_01" / "transform.json"
    transform.write_text(json.dumps({**json.loads(transform.read_text()), "registered": "no"}))
    with pytest.raises(FormatError, match=r"epoch_01.*transform.json.*registered"):
        evaluate(dataset, prediction.parent)


def test_bad_predictions_are_reported_not_scored(dataset, prediction, capsys):
    def shorten(r):
        r.class_id, r.instance_id = r.class_id[:-5], r.instance_id[:-5]
    _edit(prediction / "epoch_01", shorten)
    with pytest.raises(FormatError, match="cloud has"):
        evaluate(dataset, prediction.parent)
    assert main(["eval", str(dataset), str(prediction.parent), "--quiet"]) == 2
    assert "epoch_01" in capsys.readouterr().err

    shutil.copy(dataset / "scene_000" / "epoch_01" / "labels.npz", prediction / "epoch_01")
    shutil.rmtree(prediction / "epoch_02")
    with pytest.raises(FormatError, match="epoch_02"):
        evaluate(dataset, prediction.parent)
    (prediction.parent.parent / "foreign").mkdir()
    with pytest.raises(FormatError, match="dataset.json"):
        evaluate(prediction.parent.parent / "foreign", prediction.parent)


def test_unlisted_instance_ids_are_rejected(dataset, prediction):
    def unlisted(r):
        r.instance_id[:10] = 999
    _edit(prediction / "epoch_00", unlisted)
    with pytest.raises(FormatError, match="999"):
        evaluate(dataset, prediction.parent)


def test_changes_nobody_could_see_are_not_expected(tmp_path):
    """Partial coverage hides some changes; the ground truth still scores 1.0."""
    out = tmp_path / "long"
    generate_dataset(out, GenerateConfig(seed=3, revisits=10, frames=0), progress=False)
    hidden = 0
    for t in range(1, 10):
        truth = read_epoch_result(out / "scene_000" / f"epoch_{t:02d}")
        hidden += sum(1 for c in truth.changes if c.kind in ("added", "moved")
                      and not truth.instances[c.object_id].num_points)
    assert hidden > 0, "the scenario must hide a change from the robot"
    m = evaluate(out, out)
    assert (m["change_precision"], m["change_recall"]) == (1.0, 1.0)
    assert all(m[k] == 1.0 for k in AP_KEYS)


def test_several_sets_are_scored_as_one(dataset, prediction, tmp_path, capsys):
    _edit(prediction / "epoch_02", _drop(_well_seen(dataset)[0]))
    once = evaluate(dataset, prediction.parent)
    twice = evaluate_sets([(dataset, prediction.parent)] * 2)
    # the same rooms twice rank alike: the same scores, twice the counts
    for key in AP_KEYS:
        assert twice[key] == pytest.approx(once[key])
    assert twice["details"]["scenes"] == 2 * once["details"]["scenes"]
    assert twice["details"]["changes"]["true_positives"] == \
        2 * once["details"]["changes"]["true_positives"]
    assert twice["details"]["registration"][0]["scene"] == f"{dataset.name}/scene_000"
    # with a perfect set alongside, the imperfect one weighs half
    mixed = evaluate_sets([(dataset, prediction.parent), (dataset, dataset)])
    assert once["t_mAP"] < mixed["t_mAP"] < 1.0

    out = tmp_path / "m.json"
    assert main(["eval", str(dataset), str(prediction.parent), str(dataset), str(dataset),
                 "--quiet", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["t_mAP"] == pytest.approx(mixed["t_mAP"])
    assert main(["eval", str(dataset), str(prediction.parent), str(dataset), "--quiet"]) == 2
    assert "no partner" in capsys.readouterr().err
