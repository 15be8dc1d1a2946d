"""stseg eval on real benchmarks (issue 17): JSON fields written by other tools,
class-agnostic scoring, a subset of classes, and uncertain ground-truth events."""

from __future__ import annotations

import json

import pytest
import test_metrics

from stseg_ros.datasets.layout import FormatError, read_epoch_result, write_epoch_result
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
