"""Plain-text tables of objects and change events for terminals and logs."""

from __future__ import annotations

import math
from collections.abc import Iterable

from stseg_ros.core.records import ChangeKind, ChangeRecord, ObjectRecord


def _fmt_xyz(p: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:5.2f}" for v in p) + ")"


def format_objects(objects: Iterable[ObjectRecord]) -> str:
    """One line per object: id, class, state, position, yaw, size, epochs seen."""
    rows = [f"{'id':>4}  {'class':<14} {'state':<10} {'score':>5}  {'position (m)':<21} "
            f"{'yaw':>5}  {'size (m)':<21} seen"]
    for o in sorted(objects, key=lambda o: o.id):
        rows.append(
            f"{o.id:>4}  {o.class_name:<14} {o.state.name.lower():<10} {o.score:5.2f}  "
            f"{_fmt_xyz(o.pose.position):<21} {math.degrees(o.pose.yaw):5.0f}  "
            f"{_fmt_xyz(o.extents):<21} {o.epoch_first_seen}-{o.epoch_last_seen}")
    return "\n".join(rows)


def format_changes(changes: Iterable[ChangeRecord]) -> str:
    """One line per change event, in the words a person would use."""
    rows = []
    for c in changes:
        who = f"{c.class_name} #{c.object_id}"
        if c.kind == ChangeKind.MOVED:
            what = (f"moved {c.displacement:.2f} m, turned {math.degrees(c.rotation):.0f} deg "
                    f"{_fmt_xyz(c.previous_pose.position)} -> {_fmt_xyz(c.current_pose.position)}")
        elif c.kind == ChangeKind.ADDED:
            what = f"added at {_fmt_xyz(c.current_pose.position)}"
        elif c.kind == ChangeKind.REMOVED:
            what = f"removed from {_fmt_xyz(c.previous_pose.position)}"
        else:
            what = f"relabelled from class {c.previous_class_id}"
        rows.append(f"epoch {c.epoch}: {who:<16} {what}")
    return "\n".join(rows) if rows else "(no changes)"


def format_epoch_objects(epoch: int, objects: list[ObjectRecord]) -> str:
    """A titled table of the objects known after ``epoch``."""
    return f"\n=== epoch {epoch}: {len(objects)} known object(s) ===\n{format_objects(objects)}"


def format_epoch_changes(epoch: int, changes: list[ChangeRecord]) -> str:
    """A titled list of the changes detected in ``epoch``."""
    return f"--- epoch {epoch}: changes ---\n{format_changes(changes)}"
