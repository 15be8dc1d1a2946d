"""The object memory's SQLite schema, its version, and migrations between versions.

Tables (schema version 4):

- ``meta``: key/value pairs; ``format`` = ``stseg_ros.memory``, ``schema_version``.
- ``epochs``: one row per revisit: index, label, stamp, whether it was registered,
  its ``map_from_odom`` transform (16 floats, row-major JSON), registration
  fitness and inlier RMSE, point count.
- ``objects``: the latest state of every persistent object (id, class, score,
  pose as position + quaternion in the map frame, extents, points, first/last
  epoch seen, state 0 present / 1 removed / 2 unobserved, and objectness: how
  sure the segmenter is of a whole object whatever its class; v2).
- ``observations``: the same fields per (epoch, object) for objects seen in an epoch.
- ``changes``: change events (kind 0 added / 1 removed / 2 moved / 3 relabelled)
  with previous and current poses.
- ``epoch_points``: per epoch, the segmented point cloud in the map frame
  that 4D segmentation re-reads, in the order it was given, and its
  ``layout`` (v4): 0, raw little-endian blobs (xyz float32, rgb uint8,
  instance_id and class_id int32; every epoch before v4); 1, compact: xyz
  as the 1 mm cells the points lie in (an int64 origin in mm and unsigned
  offsets of 2 or 4 bytes, read back at the cell centres), every array
  split into byte planes and zlib-compressed (``store.py`` writes and reads
  both).

Indexes (v3) let queries by class, class name, state and region be answered
by SQLite instead of reading every object.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

MEMORY_FORMAT = "stseg_ros.memory"
SCHEMA_VERSION = 4

_POSE = ("x REAL, y REAL, z REAL, qx REAL, qy REAL, qz REAL, qw REAL")
_OBJECT = (f"class_id INTEGER NOT NULL, class_name TEXT NOT NULL, score REAL, {_POSE}, "
           "extent_x REAL, extent_y REAL, extent_z REAL, num_points INTEGER, "
           "epoch_first_seen INTEGER, epoch_last_seen INTEGER, state INTEGER NOT NULL, "
           "objectness REAL")

# v3: what ObjectMemory.objects() filters on
INDEXES = """
CREATE INDEX IF NOT EXISTS objects_by_class ON objects(class_id);
CREATE INDEX IF NOT EXISTS objects_by_class_name ON objects(lower(class_name));
CREATE INDEX IF NOT EXISTS objects_by_state ON objects(state);
CREATE INDEX IF NOT EXISTS objects_by_position ON objects(x, y, z);
CREATE INDEX IF NOT EXISTS objects_by_last_seen ON objects(epoch_last_seen);
"""

SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE epochs (
    id INTEGER PRIMARY KEY, label TEXT, stamp_ns INTEGER, registered INTEGER NOT NULL,
    map_from_odom TEXT NOT NULL, fitness REAL, inlier_rmse REAL, num_points INTEGER,
    committed_at TEXT NOT NULL);
CREATE TABLE objects (id INTEGER PRIMARY KEY, {_OBJECT});
CREATE TABLE observations (
    epoch INTEGER NOT NULL REFERENCES epochs(id), object_id INTEGER NOT NULL, {_OBJECT},
    PRIMARY KEY (epoch, object_id));
CREATE TABLE changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, epoch INTEGER NOT NULL REFERENCES epochs(id),
    object_id INTEGER NOT NULL, kind INTEGER NOT NULL, class_id INTEGER, class_name TEXT,
    previous_class_id INTEGER, prev_x REAL, prev_y REAL, prev_z REAL, prev_qx REAL,
    prev_qy REAL, prev_qz REAL, prev_qw REAL, {_POSE}, confidence REAL);
CREATE TABLE epoch_points (
    epoch INTEGER PRIMARY KEY REFERENCES epochs(id), num_points INTEGER NOT NULL,
    xyz BLOB NOT NULL, rgb BLOB NOT NULL, instance_id BLOB NOT NULL, class_id BLOB NOT NULL,
    layout INTEGER NOT NULL DEFAULT 0);
CREATE INDEX observations_by_object ON observations(object_id, epoch);
CREATE INDEX changes_by_object ON changes(object_id, epoch);
""" + INDEXES


# version -> function upgrading a database from that version to the next one.
# Each runs inside the transaction that also bumps ``schema_version``.
def _add_objectness(conn: sqlite3.Connection) -> None:
    """v1 -> v2: objects and observations gain ``objectness`` (NULL for old rows)."""
    for table in ("objects", "observations"):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN objectness REAL")


def _add_indexes(conn: sqlite3.Connection) -> None:
    """v2 -> v3: indexes for queries by class, name, state, region and last epoch seen."""
    for statement in statements(INDEXES):
        conn.execute(statement)


def _add_point_layout(conn: sqlite3.Connection) -> None:
    """v3 -> v4: epoch points gain ``layout``; the epochs already stored keep
    their raw blobs (layout 0) and are read as they are, nothing is rewritten."""
    columns = {r[1] for r in conn.execute("PRAGMA table_info(epoch_points)")}
    if "layout" not in columns:
        conn.execute("ALTER TABLE epoch_points ADD COLUMN layout INTEGER NOT NULL DEFAULT 0")


MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {1: _add_objectness,
                                                               2: _add_indexes,
                                                               3: _add_point_layout}


TABLES = frozenset({"meta", "epochs", "objects", "observations", "changes", "epoch_points",
                    "sqlite_sequence"})


def statements(script: str) -> list[str]:
    """The statements of a script, to run one by one inside a transaction
    (``executescript`` would commit first)."""
    return [s.strip() for s in script.split(";") if s.strip()]


def unfinished(conn: sqlite3.Connection) -> bool:
    """True for a file whose creation was cut short before it held anything:
    no tables, or exactly this schema's tables, all empty, and no ``meta`` rows
    (what earlier versions left when killed between their two creation
    transactions). Such a file is laid out again rather than refused."""
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    if tables and not TABLES - {"sqlite_sequence"} <= set(tables) <= TABLES:
        return False                       # another application's tables: foreign
    return not any(conn.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone() for t in tables)


def create(conn: sqlite3.Connection, created_with: str) -> bool:
    """Lay out an empty database in one transaction, holding the write lock
    from the first look to the commit. Returns False, having written nothing,
    when another process laid the file out meanwhile (the caller then opens
    it as an existing memory); a killed creation leaves no tables at all."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not unfinished(conn):
            conn.rollback()
            return False
        leftover = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name != 'sqlite_sequence'")]
        for table in leftover:
            conn.execute(f'DROP TABLE "{table}"')
        for statement in statements(SCHEMA):
            conn.execute(statement)
        conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [
            ("format", MEMORY_FORMAT), ("schema_version", str(SCHEMA_VERSION)),
            ("created_with", created_with)])
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    return True


def migrate(conn: sqlite3.Connection, version: int) -> int:
    """Upgrade from ``version`` to ``SCHEMA_VERSION``, one transaction per version
    under the write lock (schema changes included: Python's sqlite3 would
    commit them on their own), re-reading the version once the lock is held
    in case another process upgraded the file meanwhile."""
    while version < SCHEMA_VERSION:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("SELECT value FROM meta WHERE key = "
                                       "'schema_version'").fetchone()[0])
            if version < SCHEMA_VERSION:
                step = MIGRATIONS.get(version)
                if step is None:
                    raise RuntimeError(f"no migration from object-memory schema v{version}")
                step(conn)
                version += 1
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                             (str(version),))
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
    return version
