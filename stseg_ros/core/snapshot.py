"""Map snapshots: the object states and change events of a sequence of epochs as
one JSON file, for publishing a stored map history without re-running mapping.

Format (``format`` must be ``stseg_ros.snapshot``, ``version`` 1)::

    {"format": "stseg_ros.snapshot", "version": 1, "map_frame": "map",
     "epochs": [{"epoch": 0, "label": "monday",
                 "objects": [{"id": 1, "class_id": 5, "score": 0.9,
                              "position": [x, y, z], "yaw": 0.0,
                              "extents": [dx, dy, dz], "num_points": 900,
                              "epoch_first_seen": 0, "epoch_last_seen": 0,
                              "state": "present"}],
                 "changes": [{"kind": "moved", "object_id": 1, "class_id": 5,
                              "previous_position": [...], "previous_yaw": 0.0,
                              "current_position": [...], "current_yaw": 0.0}]}]}
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from stseg_ros.core.classes import class_name
from stseg_ros.core.records import ChangeKind, ChangeRecord, ObjectRecord, ObjectState, Pose

SNAPSHOT_FORMAT = "stseg_ros.snapshot"
SNAPSHOT_VERSION = 1


class SnapshotError(ValueError):
    """A snapshot file is unreadable, foreign or inconsistent."""


@dataclass
class EpochState:
    """Objects (all known identities, with their state) and changes of one epoch."""

    epoch: int
    label: str = ""
    objects: list[ObjectRecord] = field(default_factory=list)
    changes: list[ChangeRecord] = field(default_factory=list)


@dataclass
class MapSnapshot:
    """A map history: epochs in increasing order."""

    epochs: list[EpochState]
    map_frame: str = "map"


def _vec(value, n: int, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise SnapshotError(f"{what}: expected {n} numbers, got {value!r}") from None
    if len(out) != n:
        raise SnapshotError(f"{what}: expected {n} numbers, got {len(out)}")
    return out


def _enum(enum_type, value, what: str):
    try:
        return enum_type[str(value).upper()]
    except KeyError:
        names = ", ".join(m.name.lower() for m in enum_type)
        raise SnapshotError(f"{what}: {value!r} is not one of {names}") from None


def _pose(entry: dict, prefix: str, what: str) -> Pose:
    x, y, z = _vec(entry.get(f"{prefix}position", (0, 0, 0)), 3, f"{what}.{prefix}position")
    return Pose.from_xyz_yaw(x, y, z, float(entry.get(f"{prefix}yaw", 0.0)))


@contextmanager
def _field_errors(what: str) -> Iterator[None]:
    """Turn a bad or missing field into a SnapshotError that says where it is."""
    try:
        yield
    except SnapshotError:
        raise
    except KeyError as err:
        raise SnapshotError(f"{what}: missing field {err}") from None
    except (TypeError, ValueError) as err:
        raise SnapshotError(f"{what}: {err}") from None


def _object(entry: dict, epoch: int, what: str) -> ObjectRecord:
    with _field_errors(what):
        cid = int(entry.get("class_id", 0))
        return ObjectRecord(
            id=int(entry["id"]),
            class_id=cid,
            class_name=str(entry.get("class_name") or class_name(cid)),
            score=float(entry.get("score", 1.0)),
            pose=_pose(entry, "", what),
            extents=_vec(entry.get("extents", (0, 0, 0)), 3, f"{what}.extents"),
            num_points=int(entry.get("num_points", 0)),
            epoch_first_seen=int(entry.get("epoch_first_seen", epoch)),
            epoch_last_seen=int(entry.get("epoch_last_seen", epoch)),
            state=_enum(ObjectState, entry.get("state", "present"), f"{what}.state"),
        )


def _change(entry: dict, epoch: int, what: str) -> ChangeRecord:
    with _field_errors(what):
        cid = int(entry.get("class_id", 0))
        return ChangeRecord(
            kind=_enum(ChangeKind, entry["kind"], f"{what}.kind"),
            object_id=int(entry["object_id"]),
            class_id=cid,
            class_name=str(entry.get("class_name") or class_name(cid)),
            epoch=epoch,
            previous_pose=_pose(entry, "previous_", what),
            current_pose=_pose(entry, "current_", what),
            previous_class_id=int(entry.get("previous_class_id", cid)),
            confidence=float(entry.get("confidence", 1.0)),
        )


def parse_snapshot(data: object, source: str = "snapshot") -> MapSnapshot:
    """Validate decoded JSON and build a MapSnapshot; raises SnapshotError."""
    if not isinstance(data, dict) or data.get("format") != SNAPSHOT_FORMAT:
        raise SnapshotError(f"{source}: not a {SNAPSHOT_FORMAT} file")
    if data.get("version") != SNAPSHOT_VERSION:
        raise SnapshotError(
            f"{source}: snapshot version {data.get('version')!r} is not supported "
            f"(this stseg_ros reads version {SNAPSHOT_VERSION})")
    epochs_data = data.get("epochs")
    if not isinstance(epochs_data, list) or not epochs_data:
        raise SnapshotError(f"{source}: 'epochs' must be a non-empty list")
    epochs: list[EpochState] = []
    for i, ep in enumerate(epochs_data):
        if not isinstance(ep, dict):
            raise SnapshotError(f"{source}: epochs[{i}] is not an object")
        index = int(ep.get("epoch", i))
        if epochs and index <= epochs[-1].epoch:
            raise SnapshotError(f"{source}: epochs[{i}] has epoch {index}, not increasing")
        objects = [_object(o, index, f"{source}: epochs[{i}].objects[{j}]")
                   for j, o in enumerate(ep.get("objects", []))]
        ids = [o.id for o in objects]
        if len(ids) != len(set(ids)):
            raise SnapshotError(f"{source}: epochs[{i}] lists an object id twice")
        changes = [_change(c, index, f"{source}: epochs[{i}].changes[{j}]")
                   for j, c in enumerate(ep.get("changes", []))]
        epochs.append(EpochState(index, str(ep.get("label", "")), objects, changes))
    return MapSnapshot(epochs=epochs, map_frame=str(data.get("map_frame", "map")))


def load_snapshot(path: str | Path) -> MapSnapshot:
    """Read and validate a snapshot file; raises SnapshotError with the reason."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SnapshotError(f"{path}: cannot read ({err.strerror})") from None
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise SnapshotError(f"{path}: not valid JSON ({err})") from None
    return parse_snapshot(data, str(path))


def example_snapshot() -> MapSnapshot:
    """The small three-epoch living-room history shipped with the package."""
    text = resources.files("stseg_ros.data").joinpath("example_snapshot.json").read_text()
    return parse_snapshot(json.loads(text), "example_snapshot.json")
