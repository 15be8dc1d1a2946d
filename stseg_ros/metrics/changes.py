"""Change detection scored over (epoch, object, kind) triples.

Matching rule: a predicted event names a predicted id; it refers to the
ground-truth object that id matches with IoU above 0.5 where the object is
visible - in the event's epoch for ``added`` and ``moved``, and for
``removed`` in the last earlier epoch in which the predicted id has points.
It is a true positive when the ground truth holds the same kind of event for
that object in that epoch (each true event counts once), and a false
positive otherwise. An event whose id has no points where it would be
matched names nothing checkable and is ignored. Ground-truth events nobody
could see are not expected: an addition or move of an object without points
in that epoch, a removal of an object never seen before. A true event marked
``ambiguous`` is uncertain: neither missed nor found (swaps of identical
objects, which nobody can see happen, and events an importer could not
confirm), and a predicted event of the same kind for that object is ignored.
Ground-truth objects in ``ignored`` (classes left out of scoring) have no
expected events, and predicted events referring to them are ignored. Epoch 0
has no previous epoch and is not scored; kinds other than added, removed and
moved are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stseg_ros.core.layout import CHANGE_KINDS, ChangeEntry
from stseg_ros.metrics.overlap import EpochOverlap


@dataclass
class EventVerdict:
    """How one predicted event, or one missed true event, was scored.
    ``outcome``: "true", "false" or "missed"; ``truth_id``: the ground-truth
    object it refers to (None: none matched)."""

    kind: str
    object_id: int                 # predicted id; for "missed", the ground-truth id
    outcome: str
    truth_id: int | None = None
    confidence: float | None = None
    epoch: int = 0
    scene: str = ""


@dataclass
class ChangeCounts:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0
    verdicts: list[EventVerdict] = field(default_factory=list)

    def add(self, other: ChangeCounts) -> None:
        self.true_positives += other.true_positives
        self.false_positives += other.false_positives
        self.false_negatives += other.false_negatives
        self.verdicts += other.verdicts

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else float(self.false_negatives == 0)

    @property
    def recall(self) -> float:
        real = self.true_positives + self.false_negatives
        return self.true_positives / real if real else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score_epoch_changes(truth: list[ChangeEntry], predicted: list[ChangeEntry],
                        history: list[EpochOverlap],
                        ignored: frozenset[int] = frozenset()) -> ChangeCounts:
    """Counts for the last epoch t >= 1 of ``history`` (epochs 0..t of a scene);
    ``ignored``: ground-truth ids whose events are neither expected nor wrong."""
    t = len(history) - 1
    now = history[t]
    refers = [{p: g for g, p in e.best_match(0.5).items()} for e in history]

    def observable(kind: str, g: int) -> bool:
        if kind == "removed":
            return any(g in e.gt_size for e in history[:t])
        return g in now.gt_size

    def referent(kind: str, p: int) -> int | None | bool:
        """Ground-truth id the predicted id refers to; None: no match; False: the id
        has no points where it would be matched, so the event names nothing."""
        epochs = range(t - 1, -1, -1) if kind == "removed" else (t,)
        for s in epochs:
            if p in history[s].pred_size:
                return refers[s].get(p)
        return False

    real = {(c.kind, c.object_id) for c in truth
            if c.kind in CHANGE_KINDS and not c.ambiguous and c.object_id not in ignored
            and observable(c.kind, c.object_id)}
    uncertain = {(c.kind, c.object_id) for c in truth if c.ambiguous}
    counts = ChangeCounts()
    found: set[tuple[str, int]] = set()
    for event in predicted:
        if event.kind not in CHANGE_KINDS:
            continue
        g = referent(event.kind, int(event.object_id))
        key = (event.kind, g)
        if g is False or g in ignored or key in uncertain:
            continue
        true = g is not None and key in real and key not in found
        if true:
            found.add(key)
            counts.true_positives += 1
        else:
            counts.false_positives += 1
        counts.verdicts.append(EventVerdict(event.kind, int(event.object_id),
                                            "true" if true else "false", g, event.confidence,
                                            t))
    counts.false_negatives = len(real - found)
    counts.verdicts += [EventVerdict(kind, g, "missed", g, epoch=t)
                        for kind, g in sorted(real - found)]
    return counts
