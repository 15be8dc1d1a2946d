"""stseg eval on real benchmarks (issue 17): JSON fields written by other tools,
class-agnostic scoring, a subset of classes, and uncertain ground-truth events."""

from __future__ import annotations

import json
import shutil

import pytest
import test_metrics

from stseg_ros.cli import main
from stseg_ros.core.classes import class_id
from stseg_ros.core.layout import (
    ChangeEntry,
    FormatError,
    InstanceEntry,
    read_epoch_result,
    write_epoch_result,
)
from stseg_ros.metrics.evaluate import METRIC_KEYS, evaluate
from stseg_ros.metrics.selection import ScoringMode, parse_classes

# the generated room and its perfect prediction, as test_metrics builds them
dataset = test_metrics.dataset
prediction = test_metrics.prediction
_edit = test_metrics._edit
_well_seen = test_metrics._well_seen
AP_KEYS = test_metrics.AP_KEYS


def test_extra_json_fields_are_kept_and_round_trip(dataset, prediction):
    epoch = prediction / "epoch_01"
    files = {name: json.loads((epoch / name).read_text())
             for name in ("instances.json", "changes.json", "transform.json")}
    files["instances.json"]["source"] = "3RScan"
    files["instances.json"]["instances"][0]["scan_labels"] = {"label": "office chair"}
    files["changes.json"]["changes"][0]["uncertain_reason"] = "rescan did not cover it"
    files["transform.json"]["registration"] = "manual"
    for name, data in files.items():
        (epoch / name).write_text(json.dumps(data))

    result = read_epoch_result(epoch)
    first = files["instances.json"]["instances"][0]["id"]
    assert result.instances[first].extra == {"scan_labels": {"label": "office chair"}}
    assert result.changes[0].extra == {"uncertain_reason": "rescan did not cover it"}
    assert result.extra["instances.json"] == {"source": "3RScan"}
    write_epoch_result(epoch, result)
    for name, data in files.items():
        assert json.loads((epoch / name).read_text()) == data
    assert evaluate(dataset, prediction.parent)["mAP"] == 1.0


@pytest.mark.parametrize("name, key, drop", [("instances.json", "instances", "class_id"),
                                             ("changes.json", "changes", "object_id")])
def test_entries_missing_required_keys_are_refused(prediction, name, key, drop):
    path = prediction / "epoch_01" / name
    data = json.loads(path.read_text())
    del data[key][0][drop]
    path.write_text(json.dumps(data))
    with pytest.raises(FormatError, match=rf"{name}: entry 0 lacks '{drop}'"):
        read_epoch_result(path.parent)


# --- uncertain ground-truth events ----------------------------------------------------

def _uncertain_copy(dataset, tmp_path, kinds):
    """A copy of the dataset whose epoch-1 events of these kinds are marked uncertain,
    as an importer marks events it could not confirm."""
    out = tmp_path / "uncertain"
    shutil.copytree(dataset, out)
    marked = []

    def mark(r):
        for c in r.changes:
            if c.kind in kinds:
                c.ambiguous = True
                c.extra["uncertain_reason"] = "not confirmed by the rescan"
                marked.append(c)
    _edit(out / "scene_000" / "epoch_01", mark)
    assert {c.kind for c in marked} == set(kinds), "the fixture must hold these events"
    return out, marked


def test_uncertain_added_and_removed_events_are_neither_missed_nor_found(dataset, prediction,
                                                                         tmp_path):
    truth, marked = _uncertain_copy(dataset, tmp_path, ("added", "removed"))
    perfect = evaluate(dataset, prediction.parent)["details"]["changes"]
    # the prediction still reports the events: ignored, not false positives
    m = evaluate(truth, prediction.parent)
    assert (m["change_precision"], m["change_recall"]) == (1.0, 1.0)
    assert m["details"]["changes"]["true_positives"] == perfect["true_positives"] - len(marked)

    def forget(r):
        r.changes = [c for c in r.changes if c.kind not in ("added", "removed")]
    _edit(prediction / "epoch_01", forget)
    # and a prediction without them misses nothing
    m = evaluate(truth, prediction.parent)
    assert (m["change_precision"], m["change_recall"]) == (1.0, 1.0)
    assert m["details"]["changes"]["false_negatives"] == 0
    # the same prediction against the certain truth misses them
    assert evaluate(dataset, prediction.parent)["details"]["changes"]["false_negatives"] == \
        len(marked)


def test_uncertain_event_excuses_only_its_own_kind(dataset, prediction, tmp_path):
    truth, marked = _uncertain_copy(dataset, tmp_path, ("added",))
    new = marked[0].object_id          # prediction ids are the true ids here

    def claim_moved(r):                # another kind for the same object is still wrong
        r.changes.append(ChangeEntry("moved", new))
    _edit(prediction / "epoch_01", claim_moved)
    counts = evaluate(truth, prediction.parent)["details"]["changes"]
    assert counts["false_positives"] == 1 and counts["false_negatives"] == 0


# --- class-agnostic and class subsets --------------------------------------------------

def _by_class(dataset, name):
    """Well-seen objects of one NYU40 class."""
    truth = read_epoch_result(dataset / "scene_000" / "epoch_00")
    ids = [i for i in _well_seen(dataset) if truth.instances[i].class_id == class_id(name)]
    assert ids, f"the fixture room must hold a well-seen {name}"
    return ids


def _relabel(a, cls):
    def edit(r):
        r.instances[a].class_id = cls
    return edit


def _each_epoch(prediction, edit):
    for epoch in sorted(prediction.iterdir()):
        _edit(epoch, edit)


def test_class_agnostic_scores_a_right_mask_with_the_wrong_class_as_perfect(dataset,
                                                                            prediction):
    chair = _by_class(dataset, "chair")[0]
    _each_epoch(prediction, _relabel(chair, class_id("cabinet")))
    aware = evaluate(dataset, prediction.parent)
    assert aware["mAP"] < 1.0 and aware["t_mAP"] < 1.0
    assert aware["mode"] == {"class_agnostic": False, "classes": None}
    agnostic = evaluate(dataset, prediction.parent, mode=ScoringMode(class_agnostic=True))
    assert all(agnostic[k] == 1.0 for k in AP_KEYS)
    assert agnostic["change_f1"] == 1.0 and agnostic["id_switches"] == 0
    assert list(agnostic["details"]["per_class"]) == ["object"]
    assert agnostic["mode"] == {"class_agnostic": True, "classes": None}
    assert set(METRIC_KEYS) <= set(agnostic)


def test_class_agnostic_scoring_ranks_by_objectness_where_predictions_give_it(dataset,
                                                                             prediction):
    """A confident fragment outranks the whole cabinet by score; by objectness,
    which class-agnostic scoring uses where given, the whole cabinet comes first."""
    cabinet = _by_class(dataset, "cabinet")[0]

    def fragment(r):
        points = (r.instance_id == cabinet).nonzero()[0]
        r.instance_id[points[: len(points) // 5]] = 999
        r.instances[999] = InstanceEntry(999, class_id("cabinet"), 1.0)
        r.instances[cabinet].score = 0.2
    _each_epoch(prediction, fragment)
    agnostic = ScoringMode(class_agnostic=True)
    by_score = evaluate(dataset, prediction.parent, mode=agnostic)["mAP"]

    def objectness(r):
        for i, e in r.instances.items():
            e.objectness = 0.1 if i == 999 else 0.9
    _each_epoch(prediction, objectness)
    assert evaluate(dataset, prediction.parent, mode=agnostic)["mAP"] > by_score
    # class-aware scoring keeps ranking by score
    assert evaluate(dataset, prediction.parent)["mAP"] == pytest.approx(
        evaluate(dataset, prediction.parent, mode=ScoringMode())["mAP"])
    entry = read_epoch_result(prediction / "epoch_00").instances[999]
    assert entry.objectness == 0.1 and "objectness" not in entry.extra


def test_classes_score_only_the_listed_ones(dataset, prediction):
    chairs = ScoringMode(classes=frozenset({class_id("chair")}))
    m = evaluate(dataset, prediction.parent, mode=chairs)
    assert all(m[k] == 1.0 for k in AP_KEYS)
    assert list(m["details"]["per_class"]) == ["chair"]
    assert m["mode"] == {"class_agnostic": False, "classes": ["chair"]}

    cabinet = _by_class(dataset, "cabinet")[0]

    def junk(r):          # half of a cabinet as a confident extra cabinet
        points = (r.instance_id == cabinet).nonzero()[0]
        r.instance_id[points[::2]] = 999
        r.instances[999] = InstanceEntry(999, class_id("cabinet"), 1.0)
    _edit(prediction / "epoch_01", junk)
    assert evaluate(dataset, prediction.parent)["mAP"] < 1.0
    assert evaluate(dataset, prediction.parent, mode=chairs)["mAP"] == 1.0


def test_predictions_on_ignored_ground_truth_are_not_false_positives(dataset, prediction):
    # a "chair" lying on a cabinet: wrong when cabinets count, ignored when only chairs do
    _each_epoch(prediction, _relabel(_by_class(dataset, "cabinet")[0], class_id("chair")))
    chairs = ScoringMode(classes=frozenset({class_id("chair")}))
    assert evaluate(dataset, prediction.parent)["mAP"] < 1.0
    assert all(evaluate(dataset, prediction.parent, mode=chairs)[k] == 1.0 for k in AP_KEYS)


def test_changes_of_other_classes_are_not_expected(dataset, prediction):
    truth = read_epoch_result(dataset / "scene_000" / "epoch_01")
    removed = next(c for c in truth.changes if c.kind == "removed")
    assert removed.class_id != class_id("chair")

    def forget(r):
        r.changes = [c for c in r.changes if c.kind != "removed"]
    _edit(prediction / "epoch_01", forget)
    assert evaluate(dataset, prediction.parent)["change_recall"] < 1.0
    m = evaluate(dataset, prediction.parent,
                 mode=ScoringMode(classes=frozenset({class_id("chair")})))
    assert (m["change_precision"], m["change_recall"]) == (1.0, 1.0)


def test_parse_classes_reads_names_ids_and_files(tmp_path):
    assert parse_classes("Chair, 7,night_stand") == {5, 7, 32}
    (tmp_path / "list.json").write_text('["sofa", 5]')
    assert parse_classes(str(tmp_path / "list.json")) == {5, 6}
    (tmp_path / "list.txt").write_text("chair\nnight stand\n\n")
    assert parse_classes(str(tmp_path / "list.txt")) == {5, 32}
    for bad, message in (("chair,sofaa", "unknown class 'sofaa'"), ("41", "unknown class"),
                         ("wall", "structure class"), (" , ", "no class")):
        with pytest.raises(ValueError, match=message):
            parse_classes(bad)


# --- the command line ---------------------------------------------------------------

def test_cli_refuses_unknown_classes(dataset, capsys):
    assert main(["eval", str(dataset), str(dataset), "--classes", "chair,nosuchclass",
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "'nosuchclass'" in err and "chair, sofa, table" in err


def test_cli_reports_the_mode(dataset, tmp_path, capsys):
    classes = tmp_path / "classes.txt"
    classes.write_text("chair\ntable\n")
    out = tmp_path / "m.json"
    assert main(["eval", str(dataset), str(dataset), "--class-agnostic", "--classes",
                 str(classes), "--quiet", "--json", str(out)]) == 0
    assert "mode: class-agnostic" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert written["mode"] == {"class_agnostic": True, "classes": ["chair", "table"]}
    assert all(written[k] == 1.0 for k in AP_KEYS)
