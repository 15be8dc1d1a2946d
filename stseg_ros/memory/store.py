"""SQLite object memory: epochs, persistent objects, observations, change events
and per-epoch point data, written one epoch per transaction.

The file is opened in WAL mode, and everything one epoch adds is committed in
a single transaction, so a process killed in the middle of an epoch leaves the
previous epochs intact and a restart continues from there. A file that is not
an object memory (another SQLite database, a corrupt or damaged file, a newer
schema) is refused before anything is written to it; a full disk or a
read-only place is said to be one, not blamed on the file.
"""

from __future__ import annotations

import json
import sqlite3
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlite_utils import Database

from stseg_ros import __version__
from stseg_ros.core.classes import class_name
from stseg_ros.core.query import ObjectQuery
from stseg_ros.core.records import ChangeKind, ChangeRecord, ObjectRecord, ObjectState, Pose
from stseg_ros.memory.schema import MEMORY_FORMAT, SCHEMA_VERSION, create, migrate, unfinished


class MemoryFileError(RuntimeError):
    """The file cannot be used as an object memory; it was left untouched."""


def _storage_error(path: Path, err: sqlite3.Error, doing: str,
                   outcome: str = "the file was left as it was") -> MemoryFileError:
    """What went wrong, said as the user can act on it: a full disk or a
    read-only place is not damage to the file's content."""
    code = (getattr(err, "sqlite_errorcode", None) or 0) & 0xFF
    if code == sqlite3.SQLITE_FULL:
        return MemoryFileError(f"{path}: disk full while {doing}; {outcome}; free some "
                               f"space and run again (SQLite: {err})")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM):
        return MemoryFileError(f"{path}: the file or its folder is read-only (while {doing}: "
                               f"{err}); {outcome}; put the memory where it can be written "
                               "(--db) or make it writable")
    return MemoryFileError(f"{path}: {doing} failed ({err}); {outcome}")


@dataclass
class EpochEntry:
    """What the memory keeps about one revisit besides its objects."""

    index: int
    registered: bool
    map_from_odom: np.ndarray            # (4, 4)
    label: str = ""
    stamp_ns: int = 0
    fitness: float = 0.0
    inlier_rmse: float = 0.0
    num_points: int = 0


@dataclass
class EpochPoints:
    """An epoch's segmented cloud in the map frame."""

    xyz: np.ndarray                      # (N, 3) float32
    rgb: np.ndarray                      # (N, 3) uint8
    instance_id: np.ndarray              # (N,) int32
    class_id: np.ndarray                 # (N,) int32

    def __post_init__(self) -> None:
        n = len(self.xyz)
        if self.xyz.shape != (n, 3) or self.rgb.shape != (n, 3) or \
                self.instance_id.shape != (n,) or self.class_id.shape != (n,):
            raise ValueError("epoch points need xyz (N,3), rgb (N,3), instance_id (N,), "
                             "class_id (N,)")


RAW, COMPACT = 0, 1              # ``epoch_points.layout``
_MM = 1000.0                      # compact positions: cells of 1 mm
_HEADER = struct.Struct("<3qB")   # compact xyz: origin (mm), bytes per offset


def _planes(a: np.ndarray) -> bytes:
    """(N, k) array as its byte planes (each byte of each column over all points
    in a row), which zlib packs far better than interleaved values."""
    a = np.ascontiguousarray(a.reshape(len(a), -1))
    return a.view(np.uint8).reshape(len(a), a.shape[1], a.itemsize).transpose(1, 2, 0).tobytes()


def _unplanes(blob: bytes, n: int, dtype: str, k: int) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    planes = np.frombuffer(zlib.decompress(blob), np.uint8).reshape(k, size, n)
    return np.ascontiguousarray(planes.transpose(2, 0, 1)).view(dtype).reshape(n, k)


def _encode_points(points: EpochPoints) -> dict:
    """An epoch's cloud, compact (about 6-9 bytes a point instead of 23): each
    position becomes the 1 mm cell it lies in, read back at the cell centre,
    so a point moves at most 0.5 mm per axis and stays in its voxel of any
    grid of whole millimetres (the 4D network's 5 cm one); colours and ids
    are kept exactly, and so is the order. Clouds that do not fit (non-finite
    points, a span over 4000 km) are kept raw."""
    xyz = np.asarray(points.xyz, np.float64)
    ids = {"rgb": np.ascontiguousarray(points.rgb, np.uint8),
           "instance_id": np.ascontiguousarray(points.instance_id, "<i4"),
           "class_id": np.ascontiguousarray(points.class_id, "<i4")}
    if len(xyz) and np.isfinite(xyz).all():
        cells = np.floor(xyz * _MM).astype(np.int64)
        origin = cells.min(axis=0)
        span = int((cells - origin).max())
        if span < 2**32:
            width = 2 if span < 2**16 else 4
            offsets = (cells - origin).astype(f"<u{width}")
            return {"layout": COMPACT,
                    "xyz": _HEADER.pack(*origin.tolist(), width) + zlib.compress(
                        _planes(offsets)),
                    **{k: zlib.compress(_planes(v)) for k, v in ids.items()}}
    return {"layout": RAW, "xyz": np.ascontiguousarray(points.xyz, "<f4").tobytes(),
            **{k: v.tobytes() for k, v in ids.items()}}


def _decode_points(row: dict) -> EpochPoints:
    """Either layout back to arrays (raw: exactly as written)."""
    n = row["num_points"]
    if not row.get("layout"):
        return EpochPoints(np.frombuffer(row["xyz"], "<f4").reshape(n, 3).copy(),
                           np.frombuffer(row["rgb"], np.uint8).reshape(n, 3).copy(),
                           np.frombuffer(row["instance_id"], "<i4").copy(),
                           np.frombuffer(row["class_id"], "<i4").copy())
    *origin, width = _HEADER.unpack_from(row["xyz"])
    offsets = _unplanes(row["xyz"][_HEADER.size:], n, f"<u{width}", 3)
    xyz = (offsets + np.asarray(origin, np.int64) + 0.5) / _MM
    return EpochPoints(xyz.astype(np.float32), _unplanes(row["rgb"], n, "u1", 3),
                       _unplanes(row["instance_id"], n, "<i4", 1).reshape(n).astype(np.int32),
                       _unplanes(row["class_id"], n, "<i4", 1).reshape(n).astype(np.int32))


def _pose_columns(pose: Pose, prefix: str = "") -> dict:
    (x, y, z), (qx, qy, qz, qw) = pose.position, pose.orientation
    return {f"{prefix}x": x, f"{prefix}y": y, f"{prefix}z": z, f"{prefix}qx": qx,
            f"{prefix}qy": qy, f"{prefix}qz": qz, f"{prefix}qw": qw}


def _pose_from(row: dict, prefix: str = "") -> Pose:
    return Pose(tuple(row[f"{prefix}{k}"] for k in "xyz"),
                tuple(row[f"{prefix}q{k}"] for k in "xyzw"))


def _object_row(obj: ObjectRecord) -> dict:
    return {"id": obj.id, "class_id": obj.class_id, "class_name": obj.class_name,
            "score": obj.score, **_pose_columns(obj.pose), "extent_x": obj.extents[0],
            "extent_y": obj.extents[1], "extent_z": obj.extents[2],
            "num_points": obj.num_points, "epoch_first_seen": obj.epoch_first_seen,
            "epoch_last_seen": obj.epoch_last_seen, "state": int(obj.state),
            "objectness": obj.objectness}


def _object_from(row: dict) -> ObjectRecord:
    return ObjectRecord(
        int(row["id"]), int(row["class_id"]), row["class_name"], float(row["score"]),
        _pose_from(row), (row["extent_x"], row["extent_y"], row["extent_z"]),
        int(row["num_points"]), int(row["epoch_first_seen"]), int(row["epoch_last_seen"]),
        ObjectState(row["state"]),
        None if row.get("objectness") is None else float(row["objectness"]))


_OBJECT_COLUMNS = ("id, class_id, class_name, score, x, y, z, qx, qy, qz, qw, extent_x, "
                   "extent_y, extent_z, num_points, epoch_first_seen, epoch_last_seen, state, "
                   "objectness")


_STATES = {int(s): s for s in ObjectState}


def _object_from_tuple(r: tuple) -> ObjectRecord:
    """An object from a row of ``_OBJECT_COLUMNS`` (no dict per row: thousands of rows)."""
    return ObjectRecord(int(r[0]), int(r[1]), r[2], float(r[3]), Pose(r[4:7], r[7:11]),
                        r[11:14], int(r[14]), int(r[15]), int(r[16]), _STATES[r[17]],
                        None if r[18] is None else float(r[18]))


def _object_filter(query: ObjectQuery) -> tuple[str, list]:
    """``WHERE`` clause and arguments doing what ``ObjectQuery.matches`` does."""
    clauses, args = [], []
    for column, values in (("class_id", sorted(query.class_ids)),
                           ("lower(class_name)", sorted(query.class_names)),
                           ("id", sorted(query.ids)),
                           ("state", sorted(int(s) for s in query.states))):
        if len(values) == 1:                # the index gives them in id order, no sort
            clauses.append(f"{column} = ?")
            args.append(values[0])
        elif values:                        # one argument however many values
            clauses.append(f"{column} IN (SELECT value FROM json_each(?))")
            args.append(json.dumps(values))
    if query.region is not None:
        for axis, lo, hi in zip("xyz", *query.region, strict=True):
            clauses.append(f"{axis} BETWEEN ? AND ?")
            args += [float(lo), float(hi)]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _change_row(change: ChangeRecord) -> dict:
    return {"epoch": change.epoch, "object_id": change.object_id, "kind": int(change.kind),
            "class_id": change.class_id, "class_name": change.class_name,
            "previous_class_id": change.previous_class_id,
            **_pose_columns(change.previous_pose, "prev_"),
            **_pose_columns(change.current_pose), "confidence": change.confidence}


def _change_from(row: dict) -> ChangeRecord:
    return ChangeRecord(ChangeKind(row["kind"]), int(row["object_id"]), int(row["class_id"]),
                        row["class_name"] or class_name(row["class_id"]), int(row["epoch"]),
                        _pose_from(row, "prev_"), _pose_from(row),
                        int(row["previous_class_id"] or 0), float(row["confidence"]))


def _inspect(path: Path) -> int | None:
    """Schema version of an existing memory file (read-only look); None if it
    holds nothing yet (empty, or a creation cut short). Everything else but a
    sound memory of a version this code reads is refused."""
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as err:
        raise MemoryFileError(f"{path}: cannot open ({err})") from None
    try:
        if unfinished(conn):
            return None
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master "
                                             "WHERE type = 'table'")}
        if "meta" not in tables:
            raise MemoryFileError(f"{path}: not a {MEMORY_FORMAT} database (tables: "
                                  f"{', '.join(sorted(tables)[:5])}); refusing to touch it")
        meta = dict(conn.execute("SELECT key, value FROM meta"))
        if meta.get("format") == MEMORY_FORMAT:
            # damage past the header and meta (a bad disk, a torn copy) shows here,
            # before anything is written on top of it
            problems = [r[0] for r in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                found = "; ".join(" ".join(p.split()) for p in problems)
                raise MemoryFileError(f"{path}: the object memory is damaged (SQLite "
                                      f"quick_check: {found}); refusing to touch it "
                                      "(restore a copy or use a fresh file)")
    except sqlite3.DatabaseError as err:
        if isinstance(err, MemoryFileError):
            raise
        if (err.sqlite_errorcode or 0) & 0xFF in (sqlite3.SQLITE_READONLY,
                                                  sqlite3.SQLITE_CANTOPEN):
            raise _storage_error(path, err, "opening it") from None
        raise MemoryFileError(f"{path}: not a readable SQLite database ({err}); "
                              "refusing to touch it") from None
    finally:
        conn.close()
    if meta.get("format") != MEMORY_FORMAT:
        raise MemoryFileError(f"{path}: not a {MEMORY_FORMAT} database "
                              f"(format {meta.get('format')!r}); refusing to touch it")
    version = int(meta.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise MemoryFileError(f"{path}: object-memory schema v{version} is newer than this "
                              f"stseg_ros {__version__} reads (v{SCHEMA_VERSION}); "
                              "upgrade stseg_ros")
    return version


class ObjectMemory:
    """Persistent object memory in one SQLite file, created if missing."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.points_read = 0          # epoch clouds read so far (what a revisit costs)
        version = _inspect(self.path) if self.path.is_file() else None
        try:
            self.db = Database(self.path)
        except sqlite3.Error as err:
            raise _storage_error(self.path, err, "opening it") from None
        try:
            self._enable_wal()
            self.db.execute("PRAGMA synchronous=NORMAL")   # durable at each WAL commit
            if version is None and not create(self.db.conn, f"stseg_ros {__version__}"):
                version = _inspect(self.path)    # another process created it meanwhile
            if version is not None:
                migrate(self.db.conn, version)
        except BaseException as err:
            self.db.close()
            if isinstance(err, sqlite3.Error):
                raise _storage_error(self.path, err, "opening it") from None
            raise

    def _enable_wal(self, patience_s: float = 10.0) -> None:
        """Switch to WAL. SQLite answers a switch that races another process's
        (two mappers starting on a new file) with "locked" at once rather than
        waiting, so the switch is retried for a while."""
        deadline = time.monotonic() + patience_s
        while True:
            try:
                self.db.enable_wal()
                return
            except sqlite3.OperationalError as err:
                if err.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                    raise
                time.sleep(0.005)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ObjectMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writing ----------------------------------------------------------------

    def commit_epoch(self, entry: EpochEntry, objects: list[ObjectRecord] = (),
                     changes: list[ChangeRecord] = (), points: EpochPoints | None = None,
                     on_stage: Callable[[str], None] | None = None) -> None:
        """Store one epoch atomically: its row, the objects' new states, the
        observations of objects present in it, its changes and its points.

        An unregistered revisit must not touch objects or changes; it may keep
        its scan with classes but no object ids (in its own frame, for the
        user to inspect). ``on_stage`` is told what is being written (for
        progress output).
        A full disk or a read-only file raises ``MemoryFileError``, with
        nothing of the epoch stored and the earlier epochs as they were.
        """
        try:
            self._commit_epoch(entry, objects, changes, points, on_stage)
        except sqlite3.Error as err:
            raise _storage_error(self.path, err, f"writing epoch {entry.index}",
                                 "nothing of this epoch was stored, the earlier epochs are "
                                 "intact") from None

    def _commit_epoch(self, entry: EpochEntry, objects: list[ObjectRecord],
                      changes: list[ChangeRecord], points: EpochPoints | None,
                      on_stage: Callable[[str], None] | None) -> None:
        if entry.index in self.epoch_indices():
            raise ValueError(f"epoch {entry.index} is already stored")
        if not entry.registered and (objects or changes or (
                points is not None and np.asarray(points.instance_id).any())):
            raise ValueError("an unregistered revisit must not change objects or give "
                             "points object ids")
        transform = np.asarray(entry.map_from_odom, dtype=float)
        if transform.shape != (4, 4) or not np.isfinite(transform).all():
            raise ValueError("map_from_odom must be a finite 4x4 matrix")
        stage = on_stage or (lambda _: None)
        with self.db.atomic():
            stage("epoch")
            self.db["epochs"].insert({
                "id": entry.index, "label": entry.label, "stamp_ns": entry.stamp_ns,
                "registered": int(entry.registered),
                "map_from_odom": json.dumps(transform.reshape(-1).tolist()),
                "fitness": entry.fitness, "inlier_rmse": entry.inlier_rmse,
                "num_points": entry.num_points,
                "committed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            if points is not None:
                stage("points")
                self.db["epoch_points"].insert({
                    "epoch": entry.index, "num_points": len(points.xyz),
                    **_encode_points(points)})
            stage("objects")
            rows = [_object_row(o) for o in objects]
            if rows:
                self.db["objects"].upsert_all(rows, pk="id")
                seen = [{"epoch": entry.index, "object_id": r.pop("id"), **r} for r in rows
                        if r["state"] == ObjectState.PRESENT]
                if seen:
                    self.db["observations"].insert_all(seen)
            stage("changes")
            if changes:
                self.db["changes"].insert_all(_change_row(c) for c in changes)
            stage("commit")

    # --- reading ----------------------------------------------------------------

    def epoch_indices(self) -> list[int]:
        return [r["id"] for r in self.db.query("SELECT id FROM epochs ORDER BY id")]

    def epochs(self) -> list[EpochEntry]:
        return [EpochEntry(r["id"], bool(r["registered"]),
                           np.array(json.loads(r["map_from_odom"])).reshape(4, 4),
                           r["label"] or "", r["stamp_ns"] or 0, r["fitness"] or 0.0,
                           r["inlier_rmse"] or 0.0, r["num_points"] or 0)
                for r in self.db.query("SELECT * FROM epochs ORDER BY id")]

    def next_epoch(self) -> int:
        indices = self.epoch_indices()
        return indices[-1] + 1 if indices else 0

    def objects(self, query: ObjectQuery | None = None) -> list[ObjectRecord]:
        """Latest state of the objects matching ``query`` (all if None), by id.
        The filters are SQL over the indexed columns, so a lookup reads only
        the rows it returns (the mapper asks on every revisit and publish)."""
        where, args = _object_filter(query or ObjectQuery())
        cursor = self.db.conn.execute(f"SELECT {_OBJECT_COLUMNS} FROM objects{where} "
                                      "ORDER BY id", args)
        return [_object_from_tuple(r) for r in cursor]

    def observations(self, epoch: int) -> list[ObjectRecord]:
        rows = self.db.query("SELECT * FROM observations WHERE epoch = ? ORDER BY object_id",
                             [epoch])
        return [_object_from({**r, "id": r["object_id"]}) for r in rows]

    def changes(self, epoch: int | None = None) -> list[ChangeRecord]:
        if epoch is None:
            rows = self.db.query("SELECT * FROM changes ORDER BY epoch, id")
        else:
            rows = self.db.query("SELECT * FROM changes WHERE epoch = ? ORDER BY id", [epoch])
        return [_change_from(r) for r in rows]

    def history(self, object_id: int) -> tuple[list[ObjectRecord], list[ChangeRecord]]:
        """Every observation of one object (by epoch) and every change it went through."""
        obs = self.db.query("SELECT * FROM observations WHERE object_id = ? ORDER BY epoch",
                            [object_id])
        chs = self.db.query("SELECT * FROM changes WHERE object_id = ? ORDER BY epoch, id",
                            [object_id])
        return ([_object_from({**r, "id": r["object_id"]}) for r in obs],
                [_change_from(r) for r in chs])

    def point_epochs(self, registered: bool | None = True, last: int | None = None) -> list[int]:
        """Epochs with a stored cloud, oldest first: the registered ones (None: all),
        only the ``last`` newest if given, without reading any points."""
        where = "" if registered is None else f" WHERE e.registered = {int(registered)}"
        limit = "" if last is None else f" LIMIT {int(last)}"
        rows = self.db.conn.execute("SELECT p.epoch FROM epoch_points p JOIN epochs e ON "
                                    f"e.id = p.epoch{where} ORDER BY p.epoch DESC{limit}")
        return sorted(r[0] for r in rows)

    def points(self, epoch: int) -> EpochPoints | None:
        """The segmented cloud stored for an epoch, or None; map frame, except for an
        unregistered epoch (its own levelled frame, no object ids)."""
        rows = list(self.db.query("SELECT * FROM epoch_points WHERE epoch = ?", [epoch]))
        if not rows:
            return None
        self.points_read += 1
        return _decode_points(rows[0])
