"""Change detection scored over (epoch, object, kind) triples.

Matching rule: a predicted event names a predicted id; it refers to the
ground-truth object that id matches with IoU above 0.5 in the epoch where the
object is visible - the event's epoch for ``added`` and ``moved``, the epoch
before for ``removed``. It is a true positive when the ground truth holds the
same kind of event for that object in that epoch (each true event counts
once), and a false positive otherwise. Ground-truth swaps of identical objects
are ambiguous (nobody can see them happen): they count as neither missed nor
found, and predicted ``moved`` events on the swapped objects are ignored.
Epoch 0 has no previous epoch and is not scored; kinds other than added,
removed and moved are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from stseg_ros.datasets.layout import CHANGE_KINDS, ChangeEntry
from stseg_ros.metrics.overlap import EpochOverlap


@dataclass
class ChangeCounts:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    def add(self, other: ChangeCounts) -> None:
        self.true_positives += other.true_positives
        self.false_positives += other.false_positives
        self.false_negatives += other.false_negatives

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
                        before: EpochOverlap, now: EpochOverlap) -> ChangeCounts:
    """Counts for one epoch t >= 1; ``before``/``now`` are epochs t-1 and t."""
    real = {(c.kind, c.object_id) for c in truth if c.kind in CHANGE_KINDS and not c.ambiguous}
    ambiguous = {c.object_id for c in truth if c.ambiguous}
    # predicted id -> ground-truth id, in the epoch before and in this one
    refers = {"before": {p: g for g, p in before.best_match(0.5).items()},
              "now": {p: g for g, p in now.best_match(0.5).items()}}
    counts = ChangeCounts()
    found: set[tuple[str, int]] = set()
    for event in predicted:
        if event.kind not in CHANGE_KINDS:
            continue
        g = refers["before" if event.kind == "removed" else "now"].get(int(event.object_id))
        key = (event.kind, g)
        if g is not None and key in real and key not in found:
            found.add(key)
            counts.true_positives += 1
        elif g is not None and event.kind == "moved" and g in ambiguous:
            continue
        else:
            counts.false_positives += 1
    counts.false_negatives = len(real - found)
    return counts
