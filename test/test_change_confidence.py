"""Change events carry a confidence that means what it says: models fitted on
scored events, refused files, the mapper's gate, and the reliability table of
``stseg eval``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stseg_ros.core.layout import ChangeEntry
from stseg_ros.core.records import ObjectRecord, Pose
from stseg_ros.mapping.association import AssociationConfig
from stseg_ros.mapping.confidence import ConfidenceModel, ConfidenceModelError, fit
from stseg_ros.metrics.changes import EventVerdict, score_epoch_changes
from stseg_ros.metrics.evaluate import reliability
from stseg_ros.metrics.overlap import EpochOverlap


def _record(volume: float, objectness: float, score: float = 0.5) -> ObjectRecord:
    side = volume ** (1 / 3)
    return ObjectRecord(1, 5, "chair", score, Pose(), (side, side, side), 500, 0, 0,
                        objectness=objectness)


def test_fitted_confidences_match_how_often_events_were_real():
    """Events whose reality follows a known logistic law of size, objectness and
    sightings: the fitted confidence in each bin is close to the share that
    were real, and the model finds the law."""
    def law(record, sightings):
        return 1 / (1 + np.exp(-(-0.5 + 1.5 * np.log10(np.prod(record.extents))
                                 + 3.0 * record.objectness + 0.8 * np.log2(1 + sightings))))

    rng = np.random.default_rng(0)
    samples = []
    for _ in range(3000):
        record, sightings = _record(10 ** rng.uniform(-3, 0), rng.uniform(0, 1)), rng.integers(4)
        samples.append((record, int(sightings), bool(rng.random() < law(record, sightings))))
    model = fit({"removed": samples[:2000]})
    held = [EventVerdict("removed", 0, "true" if real else "false",
                         confidence=model.confidence("removed", r, n))
            for r, n, real in samples[2000:]]
    for row in reliability(held):
        if row["events"] >= 50:
            assert abs(row["mean_confidence"] - row["share_real"]) < 0.1, row
    # bigger, surer and oftener seen objects are likelier real, as the law says
    for record, n in ((_record(0.3, 0.9), 2), (_record(0.01, 0.5), 0), (_record(0.001, 0.1), 1)):
        assert model.confidence("removed", record, n) == pytest.approx(law(record, n), abs=0.05)
    # a kind without both real and false events gets no model and stays sure
    assert "moved" not in model.weights
    assert model.confidence("moved", _record(0.001, 0.1), 0) == 1


def test_the_shipped_model_loads_and_a_saved_model_reads_back(tmp_path):
    shipped = ConfidenceModel.load()
    assert set(shipped.weights) <= {"added", "removed", "moved"} and shipped.weights
    assert shipped.about["fitted_on"]
    path = tmp_path / "model.json"
    path.write_text(shipped.to_json())
    again = ConfidenceModel.load(path)
    assert again.weights == shipped.weights
    record = _record(0.05, 0.7)
    assert again.confidence("removed", record, 1) == shipped.confidence("removed", record, 1)


@pytest.mark.parametrize("content, says", [
    ("not json", "not JSON"),
    (json.dumps({"format": "something else"}), "not a change-confidence file"),
    (json.dumps({"format": "stseg_ros.change_confidence",
                 "features": ["bias", "log10_volume_m3", "objectness", "score",
                              "log2_sightings"],
                 "weights": {"added": [1, 2]}}), "5 finite numbers"),
    (json.dumps({"format": "stseg_ros.change_confidence", "features": ["bias"],
                 "weights": {}}), "features"),
])
def test_an_unusable_model_file_is_refused_naming_it(tmp_path, content, says):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ConfidenceModelError, match=says) as err:
        ConfidenceModel.load(path)
    assert str(path) in str(err.value)
    assert path.read_text() == content                 # left as it was
    with pytest.raises(ConfidenceModelError, match="cannot read"):
        ConfidenceModel.load(tmp_path / "missing.json")


def test_each_predicted_event_is_scored_and_each_missed_one_listed():
    # epoch 0: true object 7 is predicted 1; epoch 1: 7 gone, true 8 added as predicted 2,
    # and predicted 3 is a fragment that matches nothing
    e0 = EpochOverlap({(7, 1): 100}, {7: 5}, {1: 5}, {1: 0.9})
    e1 = EpochOverlap({(8, 2): 100, (0, 3): 40}, {8: 5}, {2: 5, 3: 5}, {2: 0.9, 3: 0.2})
    truth = [ChangeEntry("removed", 7), ChangeEntry("added", 8), ChangeEntry("moved", 8)]
    predicted = [ChangeEntry("added", 2, confidence=0.9), ChangeEntry("added", 3,
                                                                      confidence=0.2)]
    counts = score_epoch_changes(truth, predicted, [e0, e1])
    assert (counts.true_positives, counts.false_positives, counts.false_negatives) == (1, 1, 2)
    outcomes = {(v.kind, v.object_id, v.outcome, v.truth_id, v.confidence)
                for v in counts.verdicts}
    assert outcomes == {("added", 2, "true", 8, 0.9), ("added", 3, "false", None, 0.2),
                        ("removed", 7, "missed", 7, None), ("moved", 8, "missed", 8, None)}
    table = reliability(counts.verdicts)
    assert [(r["low"], r["events"], r["share_real"]) for r in table] == [(0.2, 1, 0.0),
                                                                       (0.8, 1, 1.0)]


def test_a_mapper_with_an_unusable_model_file_fails_before_mapping(tmp_path):
    from stseg_ros.mapping.pipeline import Mapper
    from stseg_ros.mapping.segmenter import make_segmenter
    from stseg_ros.memory import ObjectMemory

    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with ObjectMemory(tmp_path / "m.db") as memory, pytest.raises(ConfidenceModelError,
                                                                  match=str(bad)):
        Mapper(memory, make_segmenter("geometric"), association=AssociationConfig(
            change_confidence=str(bad)))
