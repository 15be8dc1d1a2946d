"""stseg eval on real benchmarks (issue 17): JSON fields written by other tools,
class-agnostic scoring, a subset of classes, and uncertain ground-truth events."""

from __future__ import annotations

import json
import shutil

import pytest
import test_metrics

from stseg_ros.datasets.layout import (
    ChangeEntry,
    FormatError,
    read_epoch_result,
    write_epoch_result,
)
from stseg_ros.metrics.evaluate import evaluate

# the generated room and its perfect prediction, as test_metrics builds them
dataset = test_metrics.dataset
prediction = test_metrics.prediction
_edit = test_metrics._edit


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
