"""The SQLite object memory: round trips, queries, history, atomic epochs that
survive a real kill, and refusal of files that are not an object memory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import textwrap
from dataclasses import replace

import numpy as np
import pytest

from stseg_ros.core.query import ObjectQuery
from stseg_ros.core.records import ChangeKind, ChangeRecord, ObjectRecord, ObjectState, Pose
from stseg_ros.memory import EpochEntry, EpochPoints, MemoryFileError, ObjectMemory


def _obj(i, cls, name, x, y, epoch, state=ObjectState.PRESENT, first=0):
    return ObjectRecord(i, cls, name, 0.9, Pose.from_xyz_yaw(x, y, 0.4, 0.3),
                        (0.5, 0.5, 0.9), 800, first, epoch, state)


def _points(n, seed):
    rng = np.random.default_rng(seed)
    return EpochPoints(rng.random((n, 3), dtype=np.float32),
                       rng.integers(0, 255, (n, 3), dtype=np.uint8),
                       rng.integers(0, 5, n, dtype=np.int32), rng.integers(0, 40, n,
                                                                           dtype=np.int32))


def _two_epochs(memory):
    objs0 = [_obj(1, 5, "chair", 1, 1, 0), _obj(2, 7, "table", 3, 2, 0),
             _obj(3, 29, "box", 4, 4, 0)]
    memory.commit_epoch(EpochEntry(0, True, np.eye(4), "day 1", num_points=100),
                        objs0, [ChangeRecord(ChangeKind.ADDED, o.id, o.class_id, o.class_name,
                                             0, current_pose=o.pose) for o in objs0],
                        _points(100, 0))
    moved = _obj(1, 5, "chair", 2.5, 1, 1)
    memory.commit_epoch(
        EpochEntry(1, True, np.diag([1.0, 1, 1, 1]), "day 8", fitness=0.8, num_points=120),
        [moved, _obj(2, 7, "table", 3, 2, 0, ObjectState.REMOVED),
         _obj(3, 29, "box", 4, 4, 0, ObjectState.UNOBSERVED)],
        [ChangeRecord(ChangeKind.MOVED, 1, 5, "chair", 1, objs0[0].pose, moved.pose),
         ChangeRecord(ChangeKind.REMOVED, 2, 7, "table", 1, objs0[1].pose)],
        _points(120, 1))


def test_epochs_objects_history_and_points_round_trip(tmp_path):
    path = tmp_path / "map.db"
    with ObjectMemory(path) as memory:
        _two_epochs(memory)
    with ObjectMemory(path) as memory:                      # a restart reads it all back
        assert memory.epoch_indices() == [0, 1] and memory.next_epoch() == 2
        assert memory.epochs()[1].label == "day 8" and memory.epochs()[1].fitness == 0.8
        states = {o.id: o.state for o in memory.objects()}
        assert states == {1: ObjectState.PRESENT, 2: ObjectState.REMOVED,
                          3: ObjectState.UNOBSERVED}
        assert [o.id for o in memory.objects(ObjectQuery(class_names={"chair"}))] == [1]
        assert [o.id for o in memory.objects(ObjectQuery(
            region=((2.0, 0.0, 0.0), (2.9, 2.0, 1.0))))] == [1]
        observations, changes = memory.history(1)
        assert [o.epoch_last_seen for o in observations] == [0, 1]
        assert observations[1].pose.position[0] == pytest.approx(2.5)
        assert [c.kind for c in changes] == [ChangeKind.ADDED, ChangeKind.MOVED]
        assert changes[1].displacement == pytest.approx(1.5)
        assert [o.id for o in memory.observations(1)] == [1]   # only what was seen
        stored = memory.points(1)
        expected = _points(120, 1)
        assert np.abs(stored.xyz - expected.xyz).max() <= 0.0005 + 1e-6   # 1 mm cells
        assert np.array_equal(stored.rgb, expected.rgb)
        assert np.array_equal(stored.instance_id, expected.instance_id)


def test_unregistered_revisit_is_recorded_without_touching_objects(tmp_path):
    with ObjectMemory(tmp_path / "map.db") as memory:
        _two_epochs(memory)
        before = memory.objects()
        with pytest.raises(ValueError, match="unregistered"):
            memory.commit_epoch(EpochEntry(2, False, np.eye(4)), [_obj(9, 5, "chair", 0, 0, 2)])
        with pytest.raises(ValueError, match="unregistered"):
            memory.commit_epoch(EpochEntry(2, False, np.eye(4)), points=_points(50, 2))
        scan = _points(50, 2)
        scan.instance_id[:] = 0                  # classes only: kept for inspection
        memory.commit_epoch(EpochEntry(2, False, np.eye(4), "lost"), points=scan)
        assert memory.epoch_indices() == [0, 1, 2] and not memory.epochs()[2].registered
        assert memory.objects() == before and memory.changes(2) == []
        assert np.array_equal(memory.points(2).class_id, scan.class_id)
        with pytest.raises(ValueError, match="already stored"):
            memory.commit_epoch(EpochEntry(1, True, np.eye(4)))


def test_a_prediction_of_an_unregistered_revisit_says_so_and_labels_nothing(tmp_path):
    """stseg run's prediction files mark a refused revisit, so stseg eval does
    not score the transform it was left with as a registration error."""
    from stseg_ros.core.layout import read_epoch_result, write_epoch_result
    from stseg_ros.offline.runner import prediction_from_memory

    with ObjectMemory(tmp_path / "map.db") as memory:
        _two_epochs(memory)
        memory.commit_epoch(EpochEntry(2, False, np.eye(4), "lost"))
        cloud = memory.points(1).xyz
        placed, refused = (prediction_from_memory(memory, e, cloud) for e in (1, 2))
    assert placed.registered and (placed.class_id > 0).any()
    assert not refused.registered and not refused.class_id.any()
    write_epoch_result(tmp_path / "epoch_02", refused)
    assert json.loads((tmp_path / "epoch_02" / "transform.json").read_text())["registered"] is False
    assert read_epoch_result(tmp_path / "epoch_02").registered is False


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_version_1_memory_is_upgraded_in_place_and_keeps_its_objects(tmp_path):
    """v1 files (before objectness) open, gain the column, and keep every row."""
    from stseg_ros.memory import schema

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(schema.SCHEMA.replace(", objectness REAL", ""))
    conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", [
        ("format", schema.MEMORY_FORMAT), ("schema_version", "1")])
    conn.execute("INSERT INTO epochs VALUES (0, 'day 1', 0, 1, ?, 1.0, 0.0, 10, 'then')",
                 (json.dumps(np.eye(4).ravel().tolist()),))
    conn.execute("INSERT INTO objects VALUES (1, 5, 'chair', 0.9, 1, 1, 0.4, 0, 0, 0, 1, "
                 "0.5, 0.5, 0.9, 800, 0, 0, 0)")
    conn.commit()
    conn.close()
    with ObjectMemory(path) as memory:
        (chair,) = memory.objects()
        assert (chair.id, chair.class_name, chair.objectness) == (1, "chair", None)
        memory.commit_epoch(EpochEntry(1, True, np.eye(4), "day 2", num_points=10),
                            [replace(chair, epoch_last_seen=1, objectness=0.7)], [])
    with ObjectMemory(path) as memory:
        assert memory.objects()[0].objectness == pytest.approx(0.7)
        assert memory.observations(1)[0].objectness == pytest.approx(0.7)
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT key, value FROM meta"))["schema_version"] == str(
        schema.SCHEMA_VERSION)
    conn.close()


def test_foreign_corrupt_and_newer_files_are_refused_untouched(tmp_path):
    foreign = tmp_path / "other.db"
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 20)
    newer = tmp_path / "newer.db"
    ObjectMemory(newer).close()
    conn = sqlite3.connect(newer)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for path, reason in ((foreign, "not a stseg_ros.memory"), (corrupt, "SQLite"),
                         (newer, "v99 is newer")):
        digest = _digest(path)
        with pytest.raises(MemoryFileError, match=reason):
            ObjectMemory(path)
        assert _digest(path) == digest
        assert not path.with_name(path.name + "-wal").exists() or path == newer


WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    sys.path.insert(0, {test_dir!r})
    from test_object_memory import _obj, _points
    from stseg_ros.memory import EpochEntry, ObjectMemory

    memory = ObjectMemory({path!r})
    if not memory.epoch_indices():
        memory.commit_epoch(EpochEntry(0, True, np.eye(4)), [_obj(1, 5, "chair", 1, 1, 0)],
                            points=_points(1000, 0))

    def stage(name):
        if name == "changes":                  # points and objects are written, not committed
            print("WRITING", flush=True)
            time.sleep(60)

    memory.commit_epoch(EpochEntry(1, True, np.eye(4)), [_obj(1, 5, "chair", 3, 3, 1)],
                        points=_points(200_000, 1), on_stage=stage)
""")


def test_a_process_killed_mid_epoch_leaves_the_previous_state(tmp_path, python):
    path = tmp_path / "map.db"
    script = WRITER.format(test_dir=str(__import__("pathlib").Path(__file__).parent),
                           path=str(path))
    proc = subprocess.Popen([python, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "WRITING"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    with ObjectMemory(path) as memory:
        assert memory.epoch_indices() == [0]
        assert memory.objects()[0].pose.position[:2] == (1.0, 1.0)
        assert memory.points(1) is None and len(memory.points(0).xyz) == 1000
        assert memory.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # the restart carries on with the epoch that was lost
        memory.commit_epoch(EpochEntry(1, True, np.eye(4)), [_obj(1, 5, "chair", 3, 3, 1)])
        assert memory.epoch_indices() == [0, 1]


def _several_epochs(path, epochs=3, points=20_000):
    """A real memory big enough that most of its pages hold epoch points."""
    with ObjectMemory(path) as memory:
        for t in range(epochs):
            memory.commit_epoch(EpochEntry(t, True, np.eye(4), f"day {t}"),
                                [_obj(1, 5, "chair", 1, 1, t)], points=_points(points, t))


@pytest.mark.parametrize("fill, shift", [(b"\xff", 0), (b"\x00", 100)])
def test_a_memory_damaged_past_its_header_and_meta_is_refused_untouched(tmp_path, fill, shift):
    """Damage in the middle of the file (a bad sector, a torn copy) is found at
    open, before a new epoch could be written on top of it."""
    path = tmp_path / "map.db"
    _several_epochs(path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 // 4096 * 4096 + shift
    data[middle:middle + 3 * 4096] = fill * (3 * 4096)
    path.write_bytes(data)
    digest = _digest(path)
    with pytest.raises(MemoryFileError, match="damaged") as refused:
        ObjectMemory(path)
    assert str(path) in str(refused.value) and "\n" not in str(refused.value)
    assert _digest(path) == digest
    wal = path.with_name(path.name + "-wal")          # a WAL file: SQLite's look, left empty
    assert not wal.exists() or wal.stat().st_size == 0


CREATOR = textwrap.dedent("""
    import sys
    from stseg_ros.memory import ObjectMemory

    with ObjectMemory(sys.argv[1]) as memory:
        print(len(memory.epoch_indices()), memory.next_epoch())
""")


def _create_concurrently(path, python):
    procs = [subprocess.Popen([python, "-c", CREATOR, str(path)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    return [(p.wait(timeout=60), *p.communicate()) for p in procs]


def test_two_processes_creating_the_same_memory_both_succeed(tmp_path, python):
    """Two mappers started together on a new file: one creates it, the other
    opens what the first created, and the file is one valid memory."""
    for trial in range(12):
        path = tmp_path / f"map{trial}.db"
        for code, out, err in _create_concurrently(path, python):
            assert (code, out.strip()) == (0, "0 0"), err
        conn = sqlite3.connect(path)
        assert dict(conn.execute("SELECT key, value FROM meta"))["format"] == "stseg_ros.memory"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()


def test_a_creation_cut_short_is_created_again_not_refused(tmp_path):
    """An empty file, or one holding only this schema's empty tables (creation
    killed before its meta rows), is a memory that was never made: it opens as
    a new one instead of being refused as foreign forever."""
    from stseg_ros.memory import schema

    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    half = tmp_path / "half.db"
    conn = sqlite3.connect(half)
    conn.executescript(schema.SCHEMA)
    conn.close()
    for path in (empty, half):
        with ObjectMemory(path) as memory:
            memory.commit_epoch(EpochEntry(0, True, np.eye(4)), [_obj(1, 5, "chair", 1, 1, 0)])
        with ObjectMemory(path) as memory:
            assert memory.epoch_indices() == [0] and [o.id for o in memory.objects()] == [1]


def test_a_full_disk_stores_nothing_of_the_epoch_and_keeps_the_earlier_ones(tmp_path):
    path = tmp_path / "map.db"
    _several_epochs(path, epochs=2, points=2000)
    with ObjectMemory(path) as memory:
        pages = memory.db.execute("PRAGMA page_count").fetchone()[0]
        memory.db.execute(f"PRAGMA max_page_count = {pages + 8}")    # SQLITE_FULL past it
        with pytest.raises(MemoryFileError, match="disk full.*nothing of this epoch was "
                                                  "stored") as full:
            memory.commit_epoch(EpochEntry(2, True, np.eye(4), "day 2"),
                                [_obj(1, 5, "chair", 4, 4, 2)], points=_points(50_000, 2))
        assert str(path) in str(full.value)
        assert memory.epoch_indices() == [0, 1] and memory.points(2) is None
        assert memory.objects()[0].pose.position[:2] == (1.0, 1.0)
        memory.db.execute("PRAGMA max_page_count = 1073741823")   # space again: it goes in
        memory.commit_epoch(EpochEntry(2, True, np.eye(4), "day 2"),
                            [_obj(1, 5, "chair", 4, 4, 2)], points=_points(50_000, 2))
    with ObjectMemory(path) as memory:
        assert memory.epoch_indices() == [0, 1, 2]
        assert np.array_equal(memory.points(1).class_id, _points(2000, 1).class_id)
        assert memory.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


WRITE_ONE = textwrap.dedent("""
    import sys
    import numpy as np
    from stseg_ros.memory import EpochEntry, MemoryFileError, ObjectMemory

    try:
        with ObjectMemory(sys.argv[1]) as memory:
            memory.commit_epoch(EpochEntry(memory.next_epoch(), True, np.eye(4)))
        print("stored")
    except MemoryFileError as err:
        print(err)
""")


def _unprivileged(command):
    """``command`` as a user that file permissions apply to (root ignores them)."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions cannot be tested")
    return ["setpriv", "--inh-caps=-dac_override", "--bounding-set=-dac_override", *command]


@pytest.mark.parametrize("read_only", ["folder", "file"])
def test_a_read_only_memory_is_said_to_be_read_only_not_damaged(tmp_path, python, read_only):
    folder = tmp_path / "maps"
    folder.mkdir()
    path = folder / "map.db"
    _several_epochs(path, epochs=1, points=100)
    digest = _digest(path)
    (path if read_only == "file" else folder).chmod(0o555 if read_only == "folder" else 0o444)
    try:
        done = subprocess.run(_unprivileged([python, "-c", WRITE_ONE, str(path)]),
                              capture_output=True, text=True, timeout=60)
    finally:
        folder.chmod(0o755)
        path.chmod(0o644)
    said = done.stdout.strip()
    assert done.returncode == 0, done.stderr
    assert said.startswith(f"{path}: the file or its folder is read-only"), said
    assert "damaged" not in said and "not a" not in said
    assert _digest(path) == digest
    with ObjectMemory(path) as memory:
        assert memory.epoch_indices() == [0]


def test_stseg_run_on_a_read_only_memory_is_a_one_line_error(tmp_path, python):
    """The user gets what to fix, in one line and a nonzero exit, no traceback."""
    folder = tmp_path / "maps"
    folder.mkdir()
    db = folder / "memory.db"
    _several_epochs(db, epochs=1, points=100)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "scan.npz", xyz=rng.random((2000, 3)) * 3,
             rgb=rng.integers(0, 255, (2000, 3), dtype=np.uint8))
    folder.chmod(0o555)
    try:
        done = subprocess.run(_unprivileged(
            [python, "-m", "stseg_ros.cli", "run", str(tmp_path / "scan.npz"), "--out",
             str(tmp_path / "out"), "--db", str(db), "--segmenter", "geometric", "--quiet"]),
            capture_output=True, text=True, timeout=120)
    finally:
        folder.chmod(0o755)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"stseg run: {db}: the file or its folder is read-only"), line


def test_queries_answered_by_sql_match_the_object_query_everywhere(tmp_path):
    """Class, name, id, state and region filters, alone and together, select
    exactly the objects ``ObjectQuery.matches`` selects (bounds included)."""
    from stseg_ros.core.query import filter_objects

    rng = np.random.default_rng(3)
    names = {5: "chair", 7: "table", 29: "box"}
    objects = []
    for i in range(1, 301):
        cls = int(rng.choice(list(names)))
        x, y = (float(v) for v in rng.integers(0, 10, 2))    # on the grid: bounds are hit
        objects.append(_obj(i, cls, names[cls].title() if i % 7 == 0 else names[cls], x, y,
                            0, ObjectState(int(rng.integers(0, 3)))))
    with ObjectMemory(tmp_path / "map.db") as memory:
        memory.commit_epoch(EpochEntry(0, True, np.eye(4)), objects)
        queries = [ObjectQuery(), ObjectQuery(class_ids={5}), ObjectQuery(class_names={"CHAIR"}),
                   ObjectQuery(class_names={"box", "table"}), ObjectQuery(ids={1, 150, 999}),
                   ObjectQuery(ids=set(range(1, 301, 2))),
                   ObjectQuery(states={ObjectState.REMOVED}),
                   ObjectQuery(region=((2.0, 3.0, 0.0), (4.0, 5.0, 1.0))),
                   ObjectQuery(region=((2.0, 3.0, 0.5), (4.0, 5.0, 1.0))),
                   ObjectQuery(class_ids={7}, states={ObjectState.PRESENT,
                                                      ObjectState.UNOBSERVED},
                               region=((0.0, 0.0, 0.0), (5.0, 9.0, 1.0)))]
        for query in queries:
            assert memory.objects(query) == filter_objects(objects, query), query


def test_a_version_2_memory_gains_its_indexes_and_keeps_every_row(tmp_path):
    from stseg_ros.memory import schema

    path = tmp_path / "v2.db"
    _several_epochs(path, epochs=2, points=100)
    conn = sqlite3.connect(path)                   # as version 2 left it: no indexes
    for name in [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = "
                                            "'index' AND name LIKE 'objects_by_%'")]:
        conn.execute(f"DROP INDEX {name}")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with ObjectMemory(path) as memory:
        assert memory.epoch_indices() == [0, 1] and [o.id for o in memory.objects()] == [1]
        indexes = {r[0] for r in memory.db.execute("SELECT name FROM sqlite_master WHERE "
                                                   "type = 'index'")}
        assert {"objects_by_class", "objects_by_state", "objects_by_position"} <= indexes
        assert np.array_equal(memory.points(1).class_id, _points(100, 1).class_id)
        version = dict(memory.db.execute("SELECT key, value FROM meta"))["schema_version"]
        assert version == str(schema.SCHEMA_VERSION)


def test_a_failed_upgrade_leaves_the_file_at_its_old_version(tmp_path, monkeypatch):
    """One transaction per version: a step that fails half-way (here: the
    index is created, then the step breaks) leaves neither the index nor a
    new version number behind."""
    from stseg_ros.memory import schema

    path = tmp_path / "v2.db"
    _several_epochs(path, epochs=1, points=100)
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX objects_by_class")
    conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    def broken(conn):
        conn.execute("CREATE INDEX objects_by_class ON objects(class_id)")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setitem(schema.MIGRATIONS, 2, broken)
    with pytest.raises(MemoryFileError, match="disk I/O error"):
        ObjectMemory(path)
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT key, value FROM meta"))["schema_version"] == "2"
    assert not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'objects_by_class'"
                            ).fetchone()
    conn.close()


def test_the_memory_bench_reports_every_query_kind():
    from stseg_ros.bench.memory import bench_memory, format_memory

    result = bench_memory(objects=300, epochs=3, startup_epochs=2, points=500, repeats=3)
    assert set(result["query_ms"]) == {"class", "id", "region", "state"}
    assert result["returned"]["id"] == 1 and result["returned"]["class"] > 0
    assert "start-up (open + first query) of 2 epochs" in format_memory(result)


def test_a_100k_point_epoch_is_stored_in_under_1_mb_and_read_back_within_1_mm(tmp_path):
    """Points are kept as their 1 mm cells, compressed: the order, colours and
    ids come back exactly, positions within half a millimetre, and the points
    stay in their voxels of the 4D network's grid."""
    from stseg_ros.bench.memory import synthetic_epoch
    from stseg_ros.learned.voxels import GRID_SHIFT

    path = tmp_path / "map.db"
    clouds = [synthetic_epoch(100_000, t) for t in range(3)]
    for cloud in clouds:
        cloud.xyz += np.float32(3.0) * np.float32(np.arange(3) - 1)   # negative places too
    with ObjectMemory(path) as memory:
        empty = path.stat().st_size
        for t, cloud in enumerate(clouds):
            memory.commit_epoch(EpochEntry(t, True, np.eye(4)), points=cloud)
    assert (path.stat().st_size - empty) / len(clouds) < 1_000_000
    with ObjectMemory(path) as memory:
        for t, cloud in enumerate(clouds):
            back = memory.points(t)
            assert back.xyz.dtype == np.float32 and back.xyz.shape == cloud.xyz.shape
            assert np.abs(back.xyz - cloud.xyz).max() <= 0.0005 + 1e-6
            for field in ("rgb", "instance_id", "class_id"):
                assert np.array_equal(getattr(back, field), getattr(cloud, field)), field
            # the same voxel, but for points on a voxel face to float32 precision
            voxel = 0.05
            moved = (np.floor(back.xyz / voxel + GRID_SHIFT)
                     != np.floor(cloud.xyz / voxel + GRID_SHIFT)).any(axis=1)
            assert moved.sum() <= len(moved) // 10_000


def test_epochs_stored_raw_by_earlier_versions_still_read_back_exactly(tmp_path):
    """A v3 file (raw float32 blobs, no layout column) opens, reads its epochs
    bit for bit, and takes new epochs in the compact layout next to them."""
    from stseg_ros.memory import schema

    path = tmp_path / "v3.db"
    ObjectMemory(path).close()
    old = _points(5000, 0)
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE epoch_points DROP COLUMN layout")
    conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    conn.execute("INSERT INTO epochs VALUES (0, 'day 1', 0, 1, ?, 1.0, 0.0, 5000, 'then')",
                 (json.dumps(np.eye(4).ravel().tolist()),))
    conn.execute("INSERT INTO epoch_points VALUES (0, 5000, ?, ?, ?, ?)",
                 (old.xyz.astype("<f4").tobytes(), old.rgb.tobytes(),
                  old.instance_id.astype("<i4").tobytes(), old.class_id.astype("<i4").tobytes()))
    conn.commit()
    conn.close()
    with ObjectMemory(path) as memory:
        back = memory.points(0)
        for field in ("xyz", "rgb", "instance_id", "class_id"):
            assert np.array_equal(getattr(back, field), getattr(old, field)), field
        memory.commit_epoch(EpochEntry(1, True, np.eye(4)), points=_points(5000, 1))
    with ObjectMemory(path) as memory:
        assert np.array_equal(memory.points(0).xyz, old.xyz)
        assert np.abs(memory.points(1).xyz - _points(5000, 1).xyz).max() <= 0.0005 + 1e-6
        layouts = dict(memory.db.execute("SELECT epoch, layout FROM epoch_points"))
        assert layouts == {0: 0, 1: 1}
        version = dict(memory.db.execute("SELECT key, value FROM meta"))["schema_version"]
        assert version == str(schema.SCHEMA_VERSION)


def test_a_foreign_file_with_only_some_empty_tables_of_the_same_names_is_refused(tmp_path):
    """Only a file holding exactly this schema's tables counts as a creation cut
    short; another application's empty ``objects`` table is not dropped."""
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE objects (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    digest = _digest(path)
    with pytest.raises(MemoryFileError, match="not a stseg_ros.memory"):
        ObjectMemory(path)
    assert _digest(path) == digest
