"""Which classes ``stseg eval`` scores, and whether classes count at all.

Benchmarks on real rescans (ScanNet, 3RScan imported into the dataset format)
score a subset of the classes, and often instances without their class:

- ``classes``: only these NYU40 classes are scored. Ground-truth objects of
  other classes are ignored, as ScanNet ignores ground truth outside its
  benchmark classes: their points become void, so a prediction lying mostly
  on them is not a false positive, and their changes are not expected (nor
  are predicted changes referring to them wrong). Predictions of other
  classes are dropped: their points count as unpredicted, and their change
  events name nothing.
- ``class_agnostic``: every object class is one class, ``object``, so instance
  AP and t-mAP score grouping and identity only. Change matching goes by id
  overlap, never by class, in either mode.

Structure classes (wall, floor, ceiling) are never instances, in any mode:
they are neither listed, ignored, dropped nor merged into ``object``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from stseg_ros.core.classes import NYU40_CLASSES, class_id, class_name
from stseg_ros.metrics.overlap import EpochOverlap

STRUCTURE_CLASSES = frozenset({class_id("wall"), class_id("floor"), class_id("ceiling")})
OBJECT_CLASS = -1          # the one class of class-agnostic scoring


@dataclass
class SelectedScene:
    """A scene's epochs as a mode scores them."""

    kept: list[EpochOverlap]        # predictions of other classes dropped: change matching
    scored: list[EpochOverlap]      # also ignored ground truth void, classes merged: AP
    ignored: frozenset[int]         # ground-truth ids of classes not scored
    groups: list[list[int]] = field(default_factory=list)   # identical groups, less ignored


@dataclass(frozen=True)
class ScoringMode:
    """How ``stseg eval`` treats classes; the default scores every class apart."""

    class_agnostic: bool = False
    classes: frozenset[int] | None = None       # None: every object class

    def keeps(self, c: int) -> bool:
        return self.classes is None or c in self.classes or c in STRUCTURE_CLASSES

    def scoring_class(self, c: int) -> int:
        return OBJECT_CLASS if self.class_agnostic and c not in STRUCTURE_CLASSES else c

    def select(self, epochs: list[EpochOverlap], groups: list[list[int]]) -> SelectedScene:
        """Drop, ignore and merge classes in a scene's epochs (module docstring)."""
        ignored = frozenset(g for e in epochs for g, c in e.gt_class.items()
                            if not self.keeps(c))
        kept = [self._drop_predictions(e) for e in epochs]
        scored = [self._merge_classes(e.voided(ignored, set()) if ignored else e) for e in kept]
        return SelectedScene(kept, scored, ignored,
                             [[i for i in g if i not in ignored] for g in groups])

    def _drop_predictions(self, epoch: EpochOverlap) -> EpochOverlap:
        drop = {p for p, c in epoch.pred_class.items() if not self.keeps(c)}
        return epoch.voided(set(), drop) if drop else epoch

    def _merge_classes(self, epoch: EpochOverlap) -> EpochOverlap:
        if not self.class_agnostic:
            return epoch
        return replace(epoch,
                       gt_class={g: self.scoring_class(c) for g, c in epoch.gt_class.items()},
                       pred_class={p: self.scoring_class(c)
                                   for p, c in epoch.pred_class.items()})

    def report(self) -> dict:
        """The mode as ``stseg eval`` writes it: ``classes`` null means all."""
        names = None if self.classes is None else [class_name(c) for c in sorted(self.classes)]
        return {"class_agnostic": self.class_agnostic, "classes": names}


CLASS_AWARE = ScoringMode()         # the default: every class scored, each apart


def scoring_class_name(c: int) -> str:
    return "object" if c == OBJECT_CLASS else class_name(c)


def describe(mode: dict) -> str:
    """One line for the terminal from ``ScoringMode.report()``."""
    kind = "class-agnostic (every object class is one)" if mode["class_agnostic"] else \
        "class-aware"
    classes = ", ".join(mode["classes"]) if mode["classes"] else "all object classes"
    return f"mode: {kind}, scoring {classes}"


def parse_classes(spec: str) -> frozenset[int]:
    """NYU40 class ids from ``--classes``: comma-separated names or ids, or a file
    of one per line or a JSON list. A bad entry is a ValueError that names it and
    the valid names, so a typo cannot silently score nothing."""
    path = Path(spec)
    items = _class_file(path) if path.is_file() else spec.split(",")
    ids = frozenset(_class(item) for item in items if str(item).strip())
    if not ids:
        raise ValueError(f"--classes {spec!r}: no class given")
    return ids


def _class_file(path: Path) -> list:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"--classes {path}: not readable ({err})") from None
    if not text.lstrip().startswith("["):
        return text.splitlines()
    try:
        items = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"--classes {path}: not a valid JSON list ({err})") from None
    return items


def _class(item) -> int:
    text = str(item).strip()
    c = int(text) if text.isdigit() and int(text) in NYU40_CLASSES else None
    if c is None:
        try:
            c = class_id(text)
        except ValueError:
            raise ValueError(f"--classes: unknown class {text!r}; valid NYU40 classes (names "
                             f"or ids): {_valid()}") from None
    if c in STRUCTURE_CLASSES:
        raise ValueError(f"--classes: {text!r} is a structure class, never an instance; "
                         f"valid: {_valid()}")
    return c


def _valid() -> str:
    return ", ".join(n for c, n in NYU40_CLASSES.items() if c not in STRUCTURE_CLASSES)
