"""stseg import: ScanNet (release layout and preprocessed arrays) and 3RScan
rescans of a small synthetic room, written here in each dataset's own files,
become datasets that stseg eval reads (issue 17)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from stseg_ros.cli import main
from stseg_ros.core.classes import class_id
from stseg_ros.core.layout import FormatError, open_dataset, read_cloud, read_epoch_result
from stseg_ros.core.pointcloud import planar_pose, transform_points
from stseg_ros.importers import ImportOptions, import_dataset
from stseg_ros.importers.ply import PlyError, read_ply_vertices, write_ply
from stseg_ros.metrics.evaluate import evaluate

# ---------------------------------------------------------------- the room


@dataclass
class Part:
    """A surface of the room or a box object, sampled once (so rescans share points)."""

    label: str
    xyz: np.ndarray
    colour: tuple[int, int, int]


def _box(lo, hi, step, rng, bottom=False) -> np.ndarray:
    """Points on the faces of an axis-aligned box (no bottom unless asked)."""
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    faces = []
    for axis in range(3):
        for side, value in ((0, lo[axis]), (1, hi[axis])):
            if axis == 2 and side == 0 and not bottom:
                continue
            a, b = [i for i in range(3) if i != axis]
            na = max(int((hi[a] - lo[a]) / step), 2)
            nb = max(int((hi[b] - lo[b]) / step), 2)
            u, v = np.meshgrid(np.linspace(lo[a], hi[a], na), np.linspace(lo[b], hi[b], nb))
            face = np.zeros((u.size, 3))
            face[:, a], face[:, b], face[:, axis] = u.ravel(), v.ravel(), value
            faces.append(face)
    pts = np.concatenate(faces)
    return pts + rng.normal(0, 0.002, pts.shape)


def room_parts(seed: int = 0) -> dict[str, Part]:
    """An L-ish room 5 x 4 m (a pillar breaks its symmetry) with a few objects."""
    rng = np.random.default_rng(seed)
    step = 0.07
    parts = {
        "floor": Part("floor", _plane((0, 0), (5, 4), 0.0, step, rng), (120, 110, 100)),
        "wall": Part("wall", np.concatenate([
            _wall((0, 0), (5, 0), step, rng), _wall((5, 0), (5, 4), step, rng),
            _wall((5, 4), (0, 4), step, rng), _wall((0, 4), (0, 0), step, rng)]),
            (200, 200, 190)),
        "pillar": Part("column", _box((0, 2.6, 0), (0.5, 3.2, 2.5), step, rng),
                       (180, 180, 180)),
        "table": Part("table", _box((1.0, 0.8, 0), (2.2, 1.6, 0.75), step, rng), (140, 90, 40)),
        "chair": Part("chair", _box((2.8, 0.6, 0), (3.3, 1.1, 0.9), step, rng), (30, 60, 160)),
        "cabinet": Part("kitchen cabinets", _box((4.4, 2.6, 0), (5.0, 3.8, 1.8), step, rng),
                        (230, 230, 230)),
        "box": Part("box", _box((2.0, 3.0, 0), (2.4, 3.4, 0.4), step, rng), (160, 120, 60)),
    }
    return parts


def _plane(lo, hi, z, step, rng) -> np.ndarray:
    u, v = np.meshgrid(np.arange(lo[0], hi[0], step), np.arange(lo[1], hi[1], step))
    pts = np.stack([u.ravel(), v.ravel(), np.full(u.size, z)], axis=1)
    return pts + rng.normal(0, 0.002, pts.shape)


def _wall(a, b, step, rng, height=2.5) -> np.ndarray:
    a, b = np.asarray(a, float), np.asarray(b, float)
    n = int(np.linalg.norm(b - a) / step)
    s, z = np.meshgrid(np.linspace(0, 1, n), np.arange(0, height, step))
    xy = a + s.ravel()[:, None] * (b - a)
    pts = np.column_stack([xy, z.ravel()])
    return pts + rng.normal(0, 0.002, pts.shape)


@dataclass
class FixtureScan:
    """One scan of the room: points in the scan's own frame, per point a part name."""

    name: str
    xyz: np.ndarray
    rgb: np.ndarray
    part: np.ndarray                 # index into names
    names: list[str]
    labels: dict[str, str]           # part -> raw label in this scan
    map_from_scan: np.ndarray


def scan_of(parts: dict[str, Part], name: str, map_from_scan: np.ndarray,
            moves: dict[str, np.ndarray] | None = None, drop=(), add: dict | None = None,
            relabel: dict | None = None) -> FixtureScan:
    moves, add, relabel = moves or {}, add or {}, relabel or {}
    chosen = {k: p for k, p in {**parts, **add}.items() if k not in drop}
    names = list(chosen)
    xyz, rgb, part = [], [], []
    for i, (k, p) in enumerate(chosen.items()):
        pts = p.xyz if k not in moves else transform_points(moves[k], p.xyz)
        xyz.append(pts)
        rgb.append(np.tile(p.colour, (len(pts), 1)))
        part.append(np.full(len(pts), i))
    xyz_map = np.concatenate(xyz)
    own = transform_points(np.linalg.inv(map_from_scan), xyz_map)
    labels = {k: relabel.get(k, p.label) for k, p in chosen.items()}
    return FixtureScan(name, own.astype(np.float32), np.concatenate(rgb).astype(np.uint8),
                       np.concatenate(part), names, labels, map_from_scan)


def rescans(parts) -> list[FixtureScan]:
    """Three scans: the second turned 25 deg and shifted, the chair moved 1.2 m, the
    box removed, a lamp added; the table is called a counter in the second one."""
    lamp = {"lamp": Part("lamp", _box((0.8, 3.3, 0), (1.1, 3.6, 1.5), 0.07,
                                      np.random.default_rng(5)), (250, 240, 120))}
    chair_moved = planar_pose(1.2, 1.0, 0.0)
    return [
        scan_of(parts, "scene0042_00", planar_pose(0, 0, 0)),
        scan_of(parts, "scene0042_01", planar_pose(0.4, -0.3, math.radians(25)),
                moves={"chair": chair_moved}, drop=("box",), add=lamp,
                relabel={"table": "kitchen counter"}),
        scan_of(parts, "scene0042_02", planar_pose(-0.2, 0.5, math.radians(-10)),
                moves={"chair": chair_moved}, drop=("box",), add=lamp),
    ]


# ------------------------------------------------------- dataset file writers


def write_scannet_release(folder: Path, scan: FixtureScan) -> Path:
    """<scan>_vh_clean_2.ply, segs.json and aggregation.json (several segments per
    object, a few vertices in no object)."""
    d = folder / scan.name
    d.mkdir(parents=True)
    write_ply(d / f"{scan.name}_vh_clean_2.ply", {
        "x": scan.xyz[:, 0], "y": scan.xyz[:, 1], "z": scan.xyz[:, 2],
        "red": scan.rgb[:, 0], "green": scan.rgb[:, 1], "blue": scan.rgb[:, 2],
        "alpha": np.full(len(scan.xyz), 255, np.uint8)})
    # 3 segments per part, numbered with gaps like ScanNet's
    seg = scan.part * 1000 + (np.arange(len(scan.part)) % 3) * 7
    seg[::97] = 999_999                                   # unannotated vertices
    (d / f"{scan.name}_vh_clean_2.0.010000.segs.json").write_text(
        json.dumps({"sceneId": scan.name, "segIndices": seg.tolist()}))
    groups = [{"id": i, "objectId": i, "label": scan.labels[k],
               "segments": sorted({int(s) for s in seg[scan.part == i]} - {999_999})}
              for i, k in enumerate(scan.names)]
    (d / f"{scan.name}.aggregation.json").write_text(
        json.dumps({"sceneId": scan.name, "segGroups": groups}))
    return d


def write_scannet_npy(folder: Path, scan: FixtureScan, train_ids: bool = False) -> None:
    """<scan>_vert.npy (7 columns, as some repositories write), _sem_label, _ins_label."""
    folder.mkdir(parents=True, exist_ok=True)
    nyu = np.array([class_id(_nyu_name(scan.labels[k])) for k in scan.names])[scan.part]
    vert = np.column_stack([scan.xyz, scan.rgb, np.zeros(len(scan.xyz))])
    np.save(folder / f"{scan.name}_vert.npy", vert)
    if train_ids:
        from stseg_ros.importers.scannet import TRAIN_IDS
        lookup = {c: i for i, c in enumerate(TRAIN_IDS)}
        sem = np.array([lookup.get(int(c), -1) for c in nyu])
    else:
        sem = nyu
    np.save(folder / f"{scan.name}_sem_label.npy", sem)
    np.save(folder / f"{scan.name}_ins_label.npy", scan.part + 1)


def _nyu_name(label: str) -> str:
    return {"kitchen cabinets": "cabinet", "kitchen counter": "counter",
            "column": "otherstructure"}.get(label, label)


def write_3rscan_ply(path: Path, fields: dict[str, np.ndarray], faces: int = 50) -> None:
    """Binary little-endian PLY with the vertex fields and a face element after them."""
    types = {"f4": "float", "u1": "uchar", "u2": "ushort"}
    n = len(next(iter(fields.values())))
    header = ["ply", "format binary_little_endian 1.0", "comment 3RScan-like",
              f"element vertex {n}",
              *(f"property {types[v.dtype.str[1:]]} {k}" for k, v in fields.items()),
              f"element face {faces}", "property list uchar int vertex_indices", "end_header"]
    table = np.empty(n, [(k, "<" + v.dtype.str[1:]) for k, v in fields.items()])
    for k, v in fields.items():
        table[k] = v
    face = np.zeros(faces, [("n", "u1"), ("v", "<i4", 3)])
    face["n"], face["v"] = 3, np.arange(faces * 3).reshape(faces, 3) % n
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode())
        f.write(table.tobytes())
        f.write(face.tobytes())


def write_3rscan(root: Path, parts) -> dict:
    """A reference and one rescan with 3RScan's files; returns what the rescan holds."""
    ref_ids = {"floor": 1, "wall": 2, "pillar": 3, "table": 4, "chair": 5, "cabinet": 6,
               "box": 7}
    s = planar_pose(0.3, -0.2, math.radians(40))                  # rescan -> reference
    chair_motion = planar_pose(1.2, 1.0, 0.0)                      # in the reference frame
    curtain = {"curtain": Part("curtain", _box((0.2, 0.05, 0.3), (1.5, 0.15, 2.3), 0.07,
                                               np.random.default_rng(7)), (90, 20, 20))}
    plant = {"plant": Part("plant", _box((3.8, 0.3, 0), (4.2, 0.7, 1.0), 0.07,
                                         np.random.default_rng(8)), (20, 150, 20))}
    ref = scan_of({**parts, **curtain}, "ref-aaaa", np.eye(4))
    # the rescan: chair moved (and numbered 12 in the rescan), box removed, plant added
    # (objectId 30), curtain deformed (nonrigid)
    res = scan_of({**parts, **curtain}, "res-bbbb", s, moves={"chair": chair_motion},
                  drop=("box",), add=plant, relabel={"table": "desk"})
    # the rescan saw half the table, and its annotator called it a desk
    keep = ~((res.part == res.names.index("table")) & (np.arange(len(res.part)) % 2 == 0))
    res = FixtureScan(res.name, res.xyz[keep], res.rgb[keep], res.part[keep], res.names,
                      res.labels, res.map_from_scan)
    ids = {**ref_ids, "curtain": 8}
    nyu = {"floor": 2, "wall": 1, "pillar": 38, "table": 7, "chair": 5, "cabinet": 3,
           "box": 29, "curtain": 16, "plant": 40}
    res_ids = {**ids, "chair": 12, "plant": 30}
    for scan, numbering in ((ref, ids), (res, res_ids)):
        d = root / "scans" / scan.name
        d.mkdir(parents=True)
        obj = np.array([numbering[k] for k in scan.names])[scan.part].astype(np.uint16)
        obj[::101] = 0                                            # unannotated
        nyu_pt = np.array([nyu[k] for k in scan.names])[scan.part].astype(np.uint8)
        if scan is res:
            nyu_pt[scan.part == scan.names.index("table")] = class_id("desk")
        nyu_pt[obj == 0] = 0
        write_3rscan_ply(d / "labels.instances.annotated.v2.ply", {
            "x": scan.xyz[:, 0], "y": scan.xyz[:, 1], "z": scan.xyz[:, 2],
            "red": scan.rgb[:, 0], "green": scan.rgb[:, 1], "blue": scan.rgb[:, 2],
            "objectId": obj, "globalId": obj.copy(), "NYU40": nyu_pt,
            "Eigen13": np.zeros(len(obj), np.uint8), "RIO27": np.zeros(len(obj), np.uint8)})
        (d / "semseg.v2.json").write_text(json.dumps({"scan_id": scan.name, "segGroups": [
            {"id": numbering[k], "objectId": numbering[k], "label": scan.labels[k],
             "segments": []} for k in scan.names]}))
    # 3RScan library convention: the rigid transform takes the reference object into
    # the rescan's frame: p_rescan = M p_ref, so M = inv(S) D
    m = np.linalg.inv(s) @ chair_motion
    meta = [{"reference": "ref-aaaa", "type": "train", "scans": [{
        "reference": "res-bbbb", "transform": s.T.ravel().tolist(),     # column-major
        "rigid": [{"instance_reference": 5, "instance_rescan": 12, "symmetry": 0,
                   "transform": m.T.ravel().tolist()}],
        "removed": [7], "nonrigid": [8]}]}]
    (root / "files").mkdir()
    (root / "files" / "3RScan.json").write_text(json.dumps(meta))
    return {"transform": s, "ids": ids}


# ------------------------------------------------------------------- helpers


def known_registration(scans: list[FixtureScan]):
    """A stand-in for register_scan that knows the fixture's transforms."""
    from stseg_ros.mapping.registration import RegistrationResult

    poses = [s.map_from_scan for s in scans]

    def register(scan_xyz, map_xyz):
        for s, pose in zip(scans, poses, strict=True):
            if len(s.xyz) == len(scan_xyz) and np.allclose(s.xyz, scan_xyz, atol=1e-5):
                return RegistrationResult(pose, True, 1.0, 0.0, "ok", 0.0)
        raise AssertionError("unknown scan")
    return register


def epochs(root: Path, scene: str = "scene_000"):
    index = open_dataset(root)
    return [read_epoch_result(root / scene / e) for e in index.epochs(scene)]


def object_of(result, points_mask) -> int:
    ids, counts = np.unique(result.instance_id[points_mask], return_counts=True)
    return int(ids[counts.argmax()])


def assert_perfect(root: Path):
    m = evaluate(root, root)
    for key in ("mAP", "AP50", "t_mAP", "t_AP50", "change_precision", "change_recall"):
        assert m[key] == 1.0, (key, m[key])
    assert m["id_switches"] == 0
    assert m["reg_rot_err_deg"] == 0.0 and m["reg_trans_err_m"] == 0.0
    return m


@pytest.fixture(scope="module")
def parts():
    return room_parts()


@pytest.fixture(scope="module")
def scans(parts):
    return rescans(parts)


# ---------------------------------------------------------------------- PLY


def test_ply_reads_binary_and_ascii_with_any_properties(tmp_path):
    fields = {"x": np.array([0.5, -1.0, 2.0], np.float32),
              "y": np.array([1, 2, 3], np.float32), "z": np.zeros(3, np.float64),
              "red": np.array([1, 2, 255], np.uint8), "objectId": np.array([0, 7, 65535],
                                                                           np.uint16),
              "label": np.array([-1, 0, 40], np.int32), "flag": np.array([True, False, True])}
    write_ply(tmp_path / "a.ply", fields)
    back = read_ply_vertices(tmp_path / "a.ply")
    assert list(back) == list(fields)
    for k, v in fields.items():
        np.testing.assert_array_equal(back[k], v.astype(back[k].dtype))
    assert back["objectId"].dtype == np.uint16 and back["z"].dtype == np.float64
    ascii_ply = ("ply\nformat ascii 1.0\ncomment hand written\nelement vertex 2\n"
                 "property float x\nproperty float y\nproperty float z\nproperty uchar red\n"
                 "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
                 "0 1 2 10\n3.5 4 5 20\n3 0 1 1\n")
    (tmp_path / "b.ply").write_text(ascii_ply)
    back = read_ply_vertices(tmp_path / "b.ply")
    np.testing.assert_allclose(back["x"], [0, 3.5])
    assert back["red"].tolist() == [10, 20] and back["red"].dtype == np.uint8


def test_ply_skips_faces_and_reads_big_endian(tmp_path):
    xyz = np.arange(12, dtype=np.float32).reshape(4, 3)
    write_3rscan_ply(tmp_path / "f.ply", {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2],
                                          "objectId": np.arange(4, dtype=np.uint16)})
    back = read_ply_vertices(tmp_path / "f.ply")
    assert back["objectId"].tolist() == [0, 1, 2, 3] and back["z"].tolist() == [2, 5, 8, 11]
    header = b"ply\nformat binary_big_endian 1.0\nelement vertex 2\nproperty int v\nend_header\n"
    (tmp_path / "be.ply").write_bytes(header + np.array([1, 258], ">i4").tobytes())
    assert read_ply_vertices(tmp_path / "be.ply")["v"].tolist() == [1, 258]


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:-10], "truncated"),
    (lambda b: b"plx" + b[3:], "not a PLY file"),
    (lambda b: b.replace(b"float x", b"quad x"), "malformed"),
    (lambda b: b.replace(b"element vertex", b"element point"), "no vertex element"),
])
def test_bad_ply_files_name_the_file(tmp_path, damage, message):
    write_ply(tmp_path / "ok.ply", {"x": np.zeros(5, np.float32), "y": np.ones(5, np.float32)})
    bad = tmp_path / "bad.ply"
    bad.write_bytes(damage((tmp_path / "ok.ply").read_bytes()))
    with pytest.raises(PlyError, match=message) as err:
        read_ply_vertices(bad)
    assert str(bad) in str(err.value) and isinstance(err.value, FormatError)
    (tmp_path / "t.ply").write_text("ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\n"
                                    "end_header\n1\n2\n")
    with pytest.raises(PlyError, match="truncated"):
        read_ply_vertices(tmp_path / "t.ply")


# ------------------------------------------------------------------ ScanNet


def test_scannet_release_rescans_become_one_scene_with_persistent_ids(tmp_path, scans):
    src = tmp_path / "scannet"
    for s in scans:
        write_scannet_release(src, s)
    lines = []
    summary = import_dataset("scannet", [src], tmp_path / "ds",
                             ImportOptions(register=known_registration(scans)), lines.append)
    assert summary.scenes == 1 and summary.epochs == 3
    assert any("scene0042_01" in line and "matched" in line for line in lines)
    root = tmp_path / "ds"
    assert not (tmp_path / "ds.partial").exists()
    info = json.loads((root / "dataset.json").read_text())
    assert info["format"] == "stseg_ros.dataset" and info["importer"] == "scannet"
    scene = json.loads((root / "scene_000" / "scene.json").read_text())
    assert scene["epochs"] == 3 and scene["identical_groups"] == []
    assert scene["scans"] == ["scene0042_00", "scene0042_01", "scene0042_02"]
    results = epochs(root)
    for t, (scan, result) in enumerate(zip(scans, results, strict=True)):
        xyz, rgb = read_cloud(root / "scene_000" / f"epoch_{t:02d}")
        np.testing.assert_allclose(xyz, scan.xyz, atol=1e-6)           # own frame
        assert rgb.dtype == np.uint8 and len(rgb) == len(xyz)
        np.testing.assert_allclose(result.map_from_odom, scan.map_from_scan, atol=1e-9)
    # every part keeps its 4D id in every scan it is in, the moved chair included
    ids = {}
    for scan, result in zip(scans, results, strict=True):
        for i, k in enumerate(scan.names):
            ids.setdefault(k, set()).add(object_of(result, scan.part == i))
    assert all(len(v) == 1 for v in ids.values()), ids
    assert len({next(iter(v)) for v in ids.values()}) == len(ids)
    chair, box, lamp, table = (next(iter(ids[k])) for k in ("chair", "box", "lamp", "table"))
    second = results[1]
    how = {i: e.extra for i, e in second.instances.items()}
    assert how[chair]["match"] == "shape" and how[table]["match"] == "overlap"
    assert how[table]["overlap"] > 0.9 and how[lamp]["match"] == "new"
    events = {(c.kind, c.object_id): c for c in second.changes}
    assert set(events) == {("moved", chair), ("removed", box), ("added", lamp)}
    assert all(c.ambiguous for c in second.changes) and not results[2].changes
    # the table, called a counter in one scan, is one table; its scan label is kept
    assert {r.instances[table].class_id for r in results} == {class_id("table")}
    assert second.instances[table].extra["scan_labels"]["label"] == "kitchen counter"
    assert second.instances[table].extra["scan_labels"]["class_id"] == class_id("counter")
    cabinet = next(iter(ids["cabinet"]))
    assert results[0].instances[cabinet].class_id == class_id("cabinet")   # synonym
    assert (results[0].instance_id == 0).sum() > 0                       # unannotated kept
    epoch1 = json.loads((root / "scene_000" / "epoch_01" / "epoch.json").read_text())
    assert epoch1["alignment"]["verdict"] == "accepted"
    assert epoch1["relabelled"][str(table)] == {"scan": class_id("counter"),
                                                "object": class_id("table")}
    assert_perfect(root)


def test_scannet_registration_is_real_by_default(tmp_path, scans):
    """Without a stand-in, register_scan aligns the rescan; its verdict is recorded."""
    src = tmp_path / "scannet"
    for s in scans[:2]:
        write_scannet_release(src, s)
    import_dataset("scannet", [src / "scene0042_00", src / "scene0042_01"], tmp_path / "ds",
                   log=lambda line: None)
    epoch = json.loads((tmp_path / "ds" / "scene_000" / "epoch_01" / "epoch.json").read_text())
    assert {"verdict", "reason", "fitness", "rmse"} <= set(epoch["alignment"])
    pose = read_epoch_result(tmp_path / "ds" / "scene_000" / "epoch_01").map_from_odom
    err = transform_points(pose, scans[1].xyz) - transform_points(scans[1].map_from_scan,
                                                                  scans[1].xyz)
    assert np.abs(err).max() < 0.05
    assert_perfect(tmp_path / "ds")


@pytest.mark.parametrize("train_ids", [False, True])
def test_scannet_npy_arrays_and_label_ids_are_detected(tmp_path, scans, train_ids):
    src = tmp_path / "npy"
    for s in scans[:2]:
        write_scannet_npy(src, s, train_ids)
    # a variant of other length (mmdetection3d's _all arrays) must not be mixed in
    for what in ("vert", "sem_label", "ins_label"):
        a = np.load(src / f"scene0042_00_{what}.npy")
        np.save(src / f"scene0042_00_{what}_all.npy", np.concatenate([a, a[:10]]))
    lines = []
    import_dataset("scannet", [src], tmp_path / "ds",
                   ImportOptions(register=known_registration(scans)), lines.append)
    expected = "scannet20 (detected)" if train_ids else "nyu40 (detected)"
    assert any(expected in line for line in lines), lines
    assert any("7 columns, the first 6 used" in line for line in lines)
    assert any("used scene0042_00_sem_label.npy, not scene0042_00_sem_label_all.npy" in line
               for line in lines)
    results = epochs(tmp_path / "ds")
    assert len(results) == 2
    chair = scans[0].names.index("chair")
    first = object_of(results[0], scans[0].part == chair)
    assert results[0].instances[first].class_id == class_id("chair")
    assert object_of(results[1], scans[1].part == scans[1].names.index("chair")) == first
    assert_perfect(tmp_path / "ds")


def test_different_rooms_become_different_scenes_and_a_label_map_is_used(tmp_path, parts,
                                                                         scans):
    src = tmp_path / "src"
    write_scannet_release(src, scans[0])
    other = scan_of(parts, "scene0043_00", np.eye(4), relabel={"box": "crate"})
    write_scannet_release(src, other)
    tsv = tmp_path / "labels.tsv"
    tsv.write_text("id\traw_category\tcategory\tcount\tnyu40id\n1\tcrate\tcrate\t5\t29\n"
                   "2\tkitchen cabinets\tcabinet\t9\t3\n")
    summary = import_dataset("scannet", [src / "scene0042_00" / "scene0042_00.aggregation.json",
                                         src / "scene0043_00"], tmp_path / "ds",
                             ImportOptions(label_map=tsv, register=known_registration(scans)),
                             log=lambda line: None)
    assert summary.scenes == 2
    r = epochs(tmp_path / "ds", "scene_001")[0]
    box = object_of(r, other.part == other.names.index("box"))
    assert r.instances[box].class_id == class_id("box")


def test_bad_scannet_inputs_are_clean_errors_naming_the_file(tmp_path, scans, capsys):
    src = tmp_path / "src"
    d = write_scannet_release(src, scans[0])
    (d / "scene0042_00.aggregation.json").unlink()
    with pytest.raises(FormatError, match="scene0042_00.aggregation.json: missing"):
        import_dataset("scannet", [d], tmp_path / "out", log=lambda line: None)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
    assert main(["import", "scannet", str(d), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stseg import:") and "aggregation.json" in err
    assert "Traceback" not in err
    d2 = write_scannet_release(tmp_path / "src2", scans[0])
    ply = d2 / "scene0042_00_vh_clean_2.ply"
    ply.write_bytes(ply.read_bytes()[:-100])
    assert main(["import", "scannet", str(d2), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(ply) in err and "truncated" in err


def test_import_refuses_a_non_empty_out(tmp_path, scans, capsys):
    d = write_scannet_release(tmp_path / "src", scans[0])
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["import", "scannet", str(d), "--out", str(out), "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"


# ------------------------------------------------------------------- 3RScan


def test_3rscan_uses_its_transform_correspondences_and_changes(tmp_path, parts, capsys):
    truth = write_3rscan(tmp_path / "3RScan", parts)
    out = tmp_path / "ds"
    assert main(["import", "3rscan", str(tmp_path / "3RScan" / "scans"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "res-bbbb" in printed and "1 mapped by rigid" in printed
    ref, res = epochs(out)
    np.testing.assert_allclose(ref.map_from_odom, np.eye(4))
    np.testing.assert_allclose(res.map_from_odom, truth["transform"], atol=1e-6)
    ids = truth["ids"]
    assert 5 in res.instances and 12 not in res.instances             # rescan 12 is ref 5
    assert res.instances[30].extra["match"] == "only in this scan"
    events = {(c.kind, c.object_id): c for c in res.changes}
    assert set(events) == {("moved", ids["chair"]), ("removed", ids["box"]),
                           ("added", 30), ("moved", ids["curtain"])}
    assert not events["moved", 5].ambiguous and events["moved", 8].ambiguous
    assert events["moved", 5].extra["moved_m"] == pytest.approx(math.hypot(1.2, 1.0), abs=0.01)
    epoch = json.loads((out / "scene_000" / "epoch_01" / "epoch.json").read_text())
    assert epoch["alignment"]["rigid_reading"].startswith("reference->rescan frame")
    assert epoch["alignment"]["rigid_fit_m"] < 0.01
    # the table, a desk in the rescan (which saw half of it), is a table in both
    assert ref.instances[4].class_id == res.instances[4].class_id == class_id("table")
    assert res.instances[4].extra["scan_labels"] == {
        "label": "desk", "class_id": class_id("desk"), "class_name": "desk",
        "scan_object_id": 4}
    assert epoch["relabelled"] == {"4": {"scan": class_id("desk"), "object": class_id("table")}}
    assert_perfect(out)


def test_3rscan_without_its_metafile_or_reference_is_a_clear_error(tmp_path, parts):
    write_3rscan(tmp_path / "3RScan", parts)
    with pytest.raises(FormatError, match="reference scan itself is not"):
        import_dataset("3rscan", [tmp_path / "3RScan" / "scans" / "res-bbbb"],
                       tmp_path / "a", log=lambda line: None)
    (tmp_path / "3RScan" / "files" / "3RScan.json").unlink()
    with pytest.raises(FormatError, match="3RScan.json not found"):
        import_dataset("3rscan", [tmp_path / "3RScan" / "scans"], tmp_path / "b",
                       log=lambda line: None)


def test_the_cli_offers_every_registered_importer(capsys):
    from stseg_ros.cli import build_parser
    from stseg_ros.importers import IMPORTERS

    with pytest.raises(SystemExit):
        build_parser().parse_args(["import", "nothing", "x", "--out", "y"])
    err = capsys.readouterr().err
    assert all(f"'{name}'" in err for name in IMPORTERS), err
    with pytest.raises(ValueError, match="unknown importer"):
        import_dataset("nothing", [], "y")


def test_a_malformed_3rscan_metafile_names_itself(tmp_path, parts, capsys):
    write_3rscan(tmp_path / "3RScan", parts)
    meta = tmp_path / "3RScan" / "files" / "3RScan.json"
    data = json.loads(meta.read_text())
    data[0]["scans"][0]["removed"] = ["seven"]
    meta.write_text(json.dumps(data))
    assert main(["import", "3rscan", str(tmp_path / "3RScan" / "scans"), "--out",
                 str(tmp_path / "ds"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(meta) in err and "'removed' must be a list of instance ids" in err
    data[0]["scans"][0]["removed"] = [7]
    data[0]["scans"][0]["transform"] = [2.0] * 16
    meta.write_text(json.dumps(data))
    with pytest.raises(FormatError, match="not a rigid transform"):
        import_dataset("3rscan", [tmp_path / "3RScan" / "scans"], tmp_path / "ds",
                       log=lambda line: None)


def test_imported_scans_train_the_cluster_classifier_beside_generated_ones(tmp_path, scans):
    from stseg_ros.offline.classifier_training import labelled_clusters, train_classifier

    src = tmp_path / "scannet"
    for s in scans[:2]:
        write_scannet_release(src, s)
    import_dataset("scannet", [src], tmp_path / "ds",
                   ImportOptions(register=known_registration(scans[:2])), lambda line: None)
    _, labels = labelled_clusters(tmp_path / "ds")
    assert len(labels) and (labels > 0).any()
    assert not np.isin(labels, [1, 2, 22]).any()     # walls with instance ids are structure
    _, card = train_classifier(range(1000, 1001), labelled=[tmp_path / "ds"],
                               labelled_weight=2, progress=False)
    assert card["labelled_clusters"] == len(labels)
    assert card["clusters"] == card["generated_clusters"] + 2 * len(labels)
