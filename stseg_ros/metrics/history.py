"""How well each kind of object history is tracked (``stseg eval`` details).

Every ground-truth 4D object gets one history kind from the true changes,
first match wins: ``swapped`` (an uncertain move of an object of an
identical group: a swap), ``moved``, ``added`` (appeared after the first
revisit), ``removed`` (gone before the last one), else ``static``. Per kind
the report gives the number of objects, the share whose best prediction has
a temporal IoU (ReScene4D: the minimum per-epoch IoU over the epochs where
either exists) above 0.5, and the mean of that best temporal IoU. A per-kind
AP would need per-kind false positives, which a prediction does not have.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stseg_ros.core.layout import EpochResult
from stseg_ros.metrics.instance_ap import Scan

HISTORY_KINDS = ("static", "moved", "swapped", "added", "removed")


def object_histories(truth: list[EpochResult], groups: list[list[int]]) -> dict[int, str]:
    """History kind of each ground-truth object of a scene. An uncertain move outside
    the identical ``groups`` is one an importer could not confirm, not a swap."""
    ids = {i for epoch in truth for i in epoch.instances}
    grouped = {i for g in groups if len(g) > 1 for i in g}
    events: dict[int, set[str]] = {}
    for epoch in truth[1:]:
        for c in epoch.changes:
            swap = c.kind == "moved" and c.ambiguous and c.object_id in grouped
            kind = "swapped" if swap else c.kind
            events.setdefault(c.object_id, set()).add(kind)
    out = {}
    for i in ids:
        seen = events.get(i, set())
        out[i] = next((k for k in HISTORY_KINDS[1:] if k in seen), "static")
    return out


@dataclass
class HistoryScores:
    found: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    iou_sum: dict[str, float] = field(default_factory=dict)

    def add(self, scan: Scan, histories: dict[int, str], skip_classes: set[int]) -> None:
        best: dict[int, float] = {}
        for (g, _), iou in scan.iou.items():
            best[g] = max(best.get(g, 0.0), iou)
        for inst in scan.gt:
            if inst.class_id in skip_classes or inst.key not in histories:
                continue
            kind, iou = histories[inst.key], best.get(inst.key, 0.0)
            self.total[kind] = self.total.get(kind, 0) + 1
            self.found[kind] = self.found.get(kind, 0) + int(iou > 0.5)
            self.iou_sum[kind] = self.iou_sum.get(kind, 0.0) + iou

    def report(self) -> dict[str, dict]:
        return {k: {"objects": self.total[k],
                    "t_recall50": self.found[k] / self.total[k],
                    "mean_t_iou": self.iou_sum[k] / self.total[k]}
                for k in HISTORY_KINDS if self.total.get(k)}
