"""Fit the change-event confidence models (``mapping/confidence.py``) on mapped
generated rooms: every event the mapper reported, scored real or false by
``stseg eval``'s rule, with the evidence of its object read back from the
scene's object memory.

The runs must report every candidate event (``association.min_change_confidence
0``); events a gate already dropped would bias the fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from stseg_ros.core.layout import FormatError
from stseg_ros.core.records import ObjectRecord
from stseg_ros.mapping.confidence import KINDS, ConfidenceModel, fit
from stseg_ros.memory import ObjectMemory
from stseg_ros.metrics.evaluate import evaluate_sets, reliability


def _evidence(memory: ObjectMemory, kind: str, object_id: int,
              epoch: int) -> tuple[ObjectRecord, int] | None:
    """The object as the mapper judged it: seen in ``epoch`` (added, moved), or
    as last seen before it (removed); and in how many epochs before it."""
    observed, _ = memory.history(object_id)
    before = [o for o in observed if o.epoch_last_seen < epoch]
    now = [o for o in observed if o.epoch_last_seen == epoch]
    record = before[-1] if kind == "removed" else (now[0] if now else None)
    return None if record is None else (record, len(before))


def scored_events(pairs: Sequence[tuple[Path, Path]]):
    """Per kind, (object record, earlier sightings, real) of each predicted
    event of each pair, and
    every verdict (for reliability tables)."""
    samples: dict[str, list[tuple[ObjectRecord, int, bool]]] = {k: [] for k in KINDS}
    verdicts = []
    for dataset, predictions in pairs:
        metrics = evaluate_sets([(Path(dataset), Path(predictions))])
        memories: dict[str, ObjectMemory] = {}
        try:
            for v in metrics["details"]["change_events"]:
                verdicts.append(v)
                if v["outcome"] == "missed" or v["kind"] not in KINDS:
                    continue
                if v["scene"] not in memories:
                    db = Path(predictions) / v["scene"] / "memory.db"
                    if not db.is_file():
                        raise FormatError(f"{db}: missing (stseg run without --db keeps each "
                                          "scene's object memory in its prediction folder)")
                    memories[v["scene"]] = ObjectMemory(db)
                found = _evidence(memories[v["scene"]], v["kind"], v["object_id"], v["epoch"])
                if found is not None:
                    samples[v["kind"]].append((*found, v["outcome"] == "true"))
        finally:
            for memory in memories.values():
                memory.close()
    return samples, verdicts


def calibrate(pairs: Sequence[tuple[Path, Path]], l2: float = 1.0) -> tuple[ConfidenceModel,
                                                                               dict]:
    """The fitted models, and a card: the rooms, the events per kind, and the
    reliability table before (as the runs reported) and after (refitted)."""
    from stseg_ros.metrics.changes import EventVerdict

    samples, verdicts = scored_events(pairs)
    counts = {k: {"real": sum(r for *_, r in s), "false": sum(not r for *_, r in s)}
              for k, s in samples.items()}
    model = fit(samples, l2, {"fitted_on": [f"{d} {p}" for d, p in pairs], "events": counts})
    refitted = [EventVerdict(k, 0, "true" if real else "false",
                             confidence=model.confidence(k, record, n))
                for k, s in samples.items() for record, n, real in s]
    before = [EventVerdict(v["kind"], v["object_id"], v["outcome"], v["truth_id"],
                           v["confidence"]) for v in verdicts]
    card = {"events": counts, "reliability_as_run": reliability(before),
            "reliability_refitted": reliability(refitted)}
    model.about["reliability"] = card["reliability_refitted"]
    return model, card
