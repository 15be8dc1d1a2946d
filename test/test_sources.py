"""Input sources: every real format gives the frames (or scan) it holds, posed
right, and ``stseg run`` maps them; bad inputs are refused with the file named."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from real_formats import (
    Y_DOWN,
    write_7scenes,
    write_custom_bag,
    write_realsense_bag,
    write_scannet_frames,
    write_tum,
    write_zed_bag,
)
from rosbags.rosbag2 import StoragePlugin
from scipy.spatial import cKDTree

from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset
from stseg_ros.cli import main
from stseg_ros.core.images import (
    decode_image,
    encode_color,
    encode_compressed_depth,
)
from stseg_ros.core.layout import FormatError, read_cloud
from stseg_ros.core.pointcloud import planar_pose, rotation_angle_deg, transform_points
from stseg_ros.importers.ply import read_ply_vertices
from stseg_ros.mapping.config import RunConfig
from stseg_ros.mapping.frames import SkippedFrame
from stseg_ros.memory import ObjectMemory
from stseg_ros.offline.runner import fuse_frames
from stseg_ros.sources import SOURCES, InputError, SourceConfig, detect_source, open_inputs
from stseg_ros.sources.rosbag import read_bag_frames

FRAMES = 8
MAP_FROM_ODOM = planar_pose(1.5, -0.7, 0.6)


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    """A generated revisit: its frames (true poses, odom frame) and true cloud."""
    out = tmp_path_factory.mktemp("room") / "ds"
    generate_dataset(out, GenerateConfig(seed=7, revisits=2, frames=FRAMES, workers=0),
                     progress=False)
    epoch = out / "scene_000" / "epoch_00"
    frames = [f for f in read_bag_frames(epoch / "bag") if not isinstance(f, SkippedFrame)]
    assert len(frames) == FRAMES
    return SimpleNamespace(root=out, frames=frames, truth=read_cloud(epoch)[0],
                           folder=tmp_path_factory.mktemp("formats"))


def _fused(path, **cfg):
    (revisit,) = open_inputs([path], cfg=SourceConfig(**cfg))
    scan, stats = fuse_frames(revisit.frames(), RunConfig())
    return revisit, scan, stats


def _on_truth(xyz, truth, transform=None):
    """Median distance of fused points to the true cloud placed by ``transform``."""
    placed = truth if transform is None else transform_points(transform, truth)
    return float(np.median(cKDTree(placed).query(xyz)[0]))


def test_tum_folder(room):
    path = write_tum(room.folder / "tum_seq", room.frames, Y_DOWN)
    revisit, scan, stats = _fused(path)
    assert revisit.source == "tum" and revisit.label == "tum_seq"
    assert stats.integrated == FRAMES and stats.dropped == 0
    assert _on_truth(scan.xyz, room.truth, Y_DOWN) < 0.02


def test_7scenes_folder(room):
    path = write_7scenes(room.folder / "seq-01", room.frames, Y_DOWN)
    revisit, scan, stats = _fused(path)
    assert revisit.source == "7scenes" and stats.integrated == FRAMES
    assert _on_truth(scan.xyz, room.truth, Y_DOWN) < 0.02


def test_scannet_export_skips_the_lost_pose(room):
    path = write_scannet_frames(room.folder / "scene_export", room.frames, lost=2)
    revisit, scan, stats = _fused(path)
    assert revisit.source == "scannet-frames"
    assert stats.integrated == FRAMES - 1
    assert stats.skipped == {"no valid camera pose for this frame": 1}
    assert _on_truth(scan.xyz, room.truth) < 0.02


def test_realsense_bag_with_compressed_images_and_a_tf_chain(room):
    path = write_realsense_bag(room.folder / "realsense.mcap", room.frames, MAP_FROM_ODOM)
    assert detect_source(path).name == "rosbag"
    lines = []
    frames = list(read_bag_frames(path, log=lines.append))
    assert len(frames) == FRAMES and not any(isinstance(f, SkippedFrame) for f in frames)
    assert "realsense2_camera" in lines[0] and "camera_color_optical_frame in map" in lines[0]
    scan, stats = fuse_frames(frames, RunConfig())
    assert _on_truth(scan.xyz, room.truth, MAP_FROM_ODOM) < 0.02   # jpeg colour, png depth


def test_zed_bag_with_odometry_bgra_and_float_depth(room):
    path = write_zed_bag(room.folder / "zed.mcap", room.frames)
    revisit, scan, stats = _fused(path)
    assert stats.integrated == FRAMES
    assert _on_truth(scan.xyz, room.truth) < 0.02


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_own_topic_names_from_the_settings(room, storage):
    path = write_custom_bag(room.folder / f"own_{storage.name}", room.frames, storage)
    with pytest.raises(InputError, match="no colour image topic"):
        list(read_bag_frames(path))
    revisit, scan, stats = _fused(path, color_topic="/front/image",
                                  depth_topic="/front/range/compressedDepth")
    assert stats.integrated == FRAMES
    assert _on_truth(scan.xyz, room.truth) < 0.02     # 32FC1 inverse-depth quantisation


def test_frames_without_a_pose_are_counted_with_the_reason(room):
    path = write_custom_bag(room.folder / "own_tf", room.frames)
    frames = list(read_bag_frames(path, SourceConfig(
        color_topic="/front/image", depth_topic="/front/range/compressedDepth",
        world_frame="map")))
    assert len(frames) == FRAMES and all(isinstance(f, SkippedFrame) for f in frames)
    assert "no transform map <- front_optical" in frames[0].reason


def test_cloud_files_and_a_folder_of_them_in_name_order(room, tmp_path):
    xyz, rgb = read_cloud(room.root / "scene_000" / "epoch_00")
    np.savez(tmp_path / "b_second.npz", xyz=xyz, rgb=rgb)
    import open3d as o3d

    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz.astype(np.float64)))
    pc.colors = o3d.utility.Vector3dVector(rgb / 255.0)
    o3d.io.write_point_cloud(str(tmp_path / "a_first.ply"), pc)
    o3d.io.write_point_cloud(str(tmp_path / "c_third.pcd"), pc)
    bad = xyz.copy()
    bad[:10] = np.nan
    np.savez(tmp_path / "d_nan.npz", xyz=bad)
    revisits = open_inputs([tmp_path])
    assert [r.label for r in revisits] == ["a_first", "b_second", "c_third", "d_nan"]
    for r in revisits:
        cloud, colour = r.cloud()
        assert np.isfinite(cloud).all() and cloud.dtype == np.float32
        assert _on_truth(cloud, xyz) < 0.005 and colour.shape == cloud.shape
    assert (revisits[3].cloud()[1] == 128).all()           # no colours: grey


@pytest.mark.parametrize(("name", "content", "match"), [
    ("empty.ply", b"ply\nformat ascii 1.0\nend_header\n", "no points"),
    ("two.npz", None, r"shape \(50, 2\)"),
    ("notes.txt", b"hello", "not in any format"),
    ("bare.npz", "npy", "a bare array, expected an .npz"),
    ("words.npz", "words", "xyz holds <U4, expected numbers"),
])
def test_bad_inputs_name_the_file(tmp_path, name, content, match):
    path = tmp_path / name
    if content is None:
        np.savez(path, xyz=np.zeros((50, 2)))
    elif content == "words":
        np.savez(path, xyz=np.array(["word"] * 50))
    elif content == "npy":
        with path.open("wb") as f:
            np.save(f, np.zeros((50, 3)))
    else:
        path.write_bytes(content)
    with pytest.raises(InputError, match=match) as err:
        for revisit in open_inputs([path]):
            revisit.cloud()
    assert str(path) in str(err.value)


def test_sources_listed_by_the_cli_are_the_registry():
    from stseg_ros.cli import build_parser

    run = next(a for a in build_parser()._subparsers._group_actions[0].choices["run"]._actions
               if a.dest == "source")
    assert tuple(run.choices) == tuple(SOURCES)


def test_compressed_depth_round_trip():
    depth = np.array([[0.0, 0.5], [2.25, 4.0]], np.float32)
    fmt, data = encode_compressed_depth(depth)
    assert fmt == "16UC1; compressedDepth png"
    msg = SimpleNamespace(format=fmt, data=data)
    assert np.allclose(decode_image(msg), depth, atol=5e-4)
    fmt, data = encode_compressed_depth(depth, "32FC1")
    out = decode_image(SimpleNamespace(format=fmt, data=data))
    assert out[0, 0] == 0 and np.allclose(out[1:], depth[1:], rtol=2e-3)
    with pytest.raises(ValueError, match="shorter than its header"):
        decode_image(SimpleNamespace(format=fmt, data=data[:8]))
    with pytest.raises(ValueError, match="not a readable PNG"):
        decode_image(SimpleNamespace(format=fmt, data=data[:40]))


def test_compressed_colour_and_four_channel_encodings():
    rgb = (np.arange(48 * 64 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    fmt, data = encode_color(rgb, "png")
    assert np.array_equal(decode_image(SimpleNamespace(format=fmt, data=data)), rgb)
    bgra = np.concatenate([rgb[..., ::-1], np.zeros((48, 64, 1), np.uint8)], axis=2)
    msg = SimpleNamespace(height=48, width=64, encoding="bgra8", step=256, is_bigendian=0,
                          data=bgra.tobytes())
    assert np.array_equal(decode_image(msg), rgb)
    with pytest.raises(ValueError, match="not a readable PNG/JPEG"):
        decode_image(SimpleNamespace(format="jpeg", data=b"\xff\xd8garbage"))


def test_run_maps_a_tum_folder_levelled(room, tmp_path):
    path = write_tum(tmp_path / "tum", room.frames, Y_DOWN)
    out = tmp_path / "pred"
    assert main(["run", str(path), "--out", str(out), "--segmenter", "geometric",
                 "--quiet"]) == 0
    with ObjectMemory(out / "memory.db") as memory:
        (entry,) = memory.epochs()
    # the map is levelled: TUM's y-down world lands z-up, the floor at z = 0
    map_from_truth = entry.map_from_odom @ Y_DOWN
    assert rotation_angle_deg(map_from_truth, np.eye(4)) < 1.0
    assert abs(map_from_truth[2, 3]) < 0.03
    cloud = read_ply_vertices(out / "revisits" / "00_tum.ply")
    assert {"x", "instance_id", "class_id", "red"} <= set(cloud)
    assert (out / "map.png").is_file() and (out / "config.yaml").is_file()
    assert (out / "revisits" / "00_tum.png").stat().st_size > 10_000     # the revisit's view
    assert json.loads((out / "changes.json").read_text())["changes"] is not None


def test_run_registers_two_cloud_revisits_and_resumes(room, tmp_path, capsys):
    scans = []
    for t in range(2):
        xyz, rgb = read_cloud(room.root / "scene_000" / f"epoch_{t:02d}")
        scans.append(tmp_path / f"{t}_visit.npz")
        np.savez(scans[-1], xyz=xyz, rgb=rgb)
    out = tmp_path / "pred"
    args = ["run", *map(str, scans), "--out", str(out), "--segmenter", "geometric", "--quiet",
            "--set", "registration.seed=1"]
    assert main(args) == 0
    assert "1_visit: registered (fitness" in capsys.readouterr().out
    with ObjectMemory(out / "memory.db") as memory:
        assert [e.registered for e in memory.epochs()] == [True, True]
    assert "registration:\n" in (out / "config.yaml").read_text()
    assert "seed: 1" in (out / "config.yaml").read_text()
    assert main(args) == 0                           # a second run keeps what is stored
    assert capsys.readouterr().out.count("already in memory.db, kept") == 2


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "registration.nosuch=1"], "registration.nosuch: no such setting"),
    (["--set", "bogus.key=1"], "bogus: no such section"),
    (["--set", "registration.min_fitness=high"], "not a valid float"),
    (["--source", "tum"], "not a tum input"),
    ([], "only 0 surface points"),
])
def test_run_refuses_bad_settings_and_inputs(room, tmp_path, capsys, args, message):
    path = write_7scenes(tmp_path / "seq", room.frames[:2])
    assert main(["run", str(path), "--out", str(tmp_path / "o"), *args]) == 2
    assert message in capsys.readouterr().err


def test_an_unregistered_revisit_keeps_its_labelled_scan_and_changes_nothing(room, tmp_path,
                                                                            capsys):
    xyz, rgb = read_cloud(room.root / "scene_000" / "epoch_00")
    np.savez(tmp_path / "0_room.npz", xyz=xyz, rgb=rgb)
    rng = np.random.default_rng(0)               # a floor alone: nothing to register on
    floor = np.column_stack([rng.uniform(0, 3, 20_000), rng.uniform(0, 3, 20_000),
                             rng.normal(0, 0.003, 20_000)]).astype(np.float32)
    np.savez(tmp_path / "1_floor.npz", xyz=floor, rgb=np.full_like(floor, 90, np.uint8))
    out = tmp_path / "pred"
    assert main(["run", str(tmp_path / "0_room.npz"), str(tmp_path / "1_floor.npz"), "--out",
                 str(out), "--segmenter", "geometric", "--quiet"]) == 0
    assert "1_floor: NOT registered (overlap" in capsys.readouterr().out
    with ObjectMemory(out / "memory.db") as memory:
        assert [e.registered for e in memory.epochs()] == [True, False]
        assert memory.changes(1) == []
        assert all(o.epoch_last_seen == 0 for o in memory.objects())
    cloud = read_ply_vertices(out / "revisits" / "01_1_floor.ply")
    assert len(cloud["x"]) > 1000 and not cloud["instance_id"].any()
    assert np.mean(cloud["class_id"] == 2) > 0.9          # kept, labelled floor (NYU40 2)


def test_run_takes_a_negative_up_axis_and_refuses_unknown_ones(room, tmp_path, capsys):
    path = write_7scenes(tmp_path / "seq", room.frames, Y_DOWN)
    assert main(["run", str(path), "--out", str(tmp_path / "a"), "--segmenter", "geometric",
                 "--quiet", "--up=-y"]) == 0
    assert "up is -y (floor normal nearest levelling.up=-y" in capsys.readouterr().out
    assert main(["run", str(path), "--out", str(tmp_path / "b"),
                 "--set", "levelling.up=sideways"]) == 2
    assert "levelling.up: 'sideways' is not one of: auto, none" in capsys.readouterr().err


def _spoil(xyz: np.ndarray, how: str) -> np.ndarray:
    xyz = np.array(xyz, np.float32)
    if how == "nan":
        xyz[:20] = np.nan
    elif how == "inf":
        xyz[5, 2] = -np.inf
    elif how == "far":
        xyz[0] = 1e30
    return xyz


@pytest.mark.parametrize(("how", "match"), [
    ("nan", r"20 of \d+ points are not finite or beyond 10000 m"),
    ("inf", r"1 of \d+ points are not finite"),
    ("far", r"1 of \d+ points are not finite or beyond 10000 m \(first: point 0\)"),
    ("flat", r"'xyz' is float32\(\d+, 2\), expected numbers of shape \(N, 3\)"),
    ("no rgb", r"no array 'rgb'"),
    ("not npz", "not a readable .npz"),
    ("bare", "a bare array, expected an .npz"),
])
def test_a_dataset_cloud_with_unusable_points_or_shapes_is_refused_naming_it(room, tmp_path,
                                                                             how, match):
    xyz, rgb = read_cloud(room.root / "scene_000" / "epoch_00")
    path = tmp_path / "cloud.npz"
    if how == "flat":
        np.savez(path, xyz=xyz[:, :2], rgb=rgb)
    elif how == "no rgb":
        np.savez(path, xyz=xyz)
    elif how == "not npz":
        path.write_bytes(b"PK\x03\x04 cut short")
    elif how == "bare":
        with path.open("wb") as f:
            np.save(f, xyz)
    else:
        np.savez(path, xyz=_spoil(xyz, how), rgb=rgb)
    with pytest.raises(FormatError, match=match) as err:
        read_cloud(tmp_path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("how", ["nan", "far", "flat"])
def test_run_of_a_dataset_with_a_bad_cloud_is_one_line_naming_the_file(tmp_path, capsys, how):
    root = tmp_path / "ds"
    generate_dataset(root, GenerateConfig(seed=3, revisits=2, frames=0), progress=False)
    path = root / "scene_000" / "epoch_00" / "cloud.npz"
    xyz, rgb = read_cloud(path.parent)
    np.savez(path, xyz=xyz[:, :2] if how == "flat" else _spoil(xyz, how), rgb=rgb)
    assert main(["run", str(root), "--out", str(tmp_path / "pred"), "--segmenter",
                 "geometric", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"stseg run: {path}: ") and "\n" not in err


def test_cloud_files_drop_far_and_non_finite_points_with_a_warning(room, tmp_path, caplog):
    import open3d as o3d

    xyz, rgb = read_cloud(room.root / "scene_000" / "epoch_00")
    spoilt = _spoil(_spoil(xyz, "far"), "inf")
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(spoilt.astype(np.float64)))
    o3d.io.write_point_cloud(str(tmp_path / "far.ply"), pc)
    np.savez(tmp_path / "all_nan.npz", xyz=np.full((500, 3), np.nan))
    with caplog.at_level("WARNING"):
        (revisit,) = open_inputs([tmp_path / "far.ply"])
        cloud, _ = revisit.cloud()
    assert np.abs(cloud).max() < 100
    assert f"{tmp_path / 'far.ply'}: 2 of {len(xyz)} points are not finite or beyond " \
           "10000 m and were dropped" in caplog.text
    with pytest.raises(InputError, match="0 usable points, too few") as err:
        open_inputs([tmp_path / "all_nan.npz"])[0].cloud()
    assert str(tmp_path / "all_nan.npz") in str(err.value)


@pytest.fixture(scope="module")
def long_bag(tmp_path_factory):
    """A generated revisit of 24 frames (enough to map two thirds of it) and its frames."""
    out = tmp_path_factory.mktemp("long") / "ds"
    generate_dataset(out, GenerateConfig(seed=7, revisits=1, frames=24, workers=0),
                     progress=False)
    bag = out / "scene_000" / "epoch_00" / "bag"
    frames = [f for f in read_bag_frames(bag) if not isinstance(f, SkippedFrame)]
    assert len(frames) == 24
    return SimpleNamespace(bag=bag, frames={f.stamp_ns: f for f in frames})


def _cut(bag, dest, keep: float = 0.7):
    """A copy of ``bag`` (a folder, or with ``dest`` ending .mcap its bare file)
    cut to ``keep`` of its MCAP file's bytes, as a killed recorder leaves it."""
    import shutil

    data = (bag / "bag.mcap").read_bytes()
    if dest.suffix == ".mcap":
        target = dest
    else:
        shutil.copytree(bag, dest)
        target = dest / "bag.mcap"
    target.write_bytes(data[:int(len(data) * keep) if keep < 1 else int(keep)])
    return dest


@pytest.mark.parametrize("name", ["cut_folder", "cut.mcap"])
def test_a_truncated_mcap_gives_the_frames_before_the_cut_and_one_warning(long_bag, tmp_path,
                                                                          caplog, name):
    path = _cut(long_bag.bag, tmp_path / name)
    with caplog.at_level("WARNING"):
        frames = [f for f in read_bag_frames(path) if not isinstance(f, SkippedFrame)]
    assert 12 <= len(frames) < 24                      # most of what came before the cut
    assert set(long_bag.frames) >= {f.stamp_ns for f in frames}
    first = sorted(long_bag.frames)[:len(frames)]
    assert sorted(f.stamp_ns for f in frames) == first              # the first ones, in full
    for f in frames:
        whole = long_bag.frames[f.stamp_ns]
        assert np.array_equal(f.color, whole.color) and np.array_equal(f.depth, whole.depth)
        assert np.allclose(f.odom_from_camera, whole.odom_from_camera)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warning.startswith(f"{path}: the bag is truncated: ")
    assert "is readable up to byte" in warning and "messages salvaged" in warning


def test_run_maps_the_readable_frames_of_a_truncated_bag(long_bag, tmp_path, capsys, caplog):
    path = _cut(long_bag.bag, tmp_path / "visit.mcap")
    kept = sum(not isinstance(f, SkippedFrame) for f in read_bag_frames(path))
    caplog.clear()
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--segmenter", "geometric",
                 "--quiet"]) == 0
    assert f"fused {kept} frames" in capsys.readouterr().out
    assert sum("the bag is truncated" in r.getMessage() for r in caplog.records) == 1
    with ObjectMemory(tmp_path / "out" / "memory.db") as memory:
        assert len(memory.epochs()) == 1 and memory.objects()


def test_replay_of_a_truncated_bag_replays_its_readable_messages(long_bag, tmp_path, capsys,
                                                                 caplog):
    from rosbags.highlevel import AnyReader

    from stseg_ros.ros.replay import revisit_label
    from stseg_ros.sources.mcap_salvage import salvage
    from stseg_ros.sources.rosbag import replayable

    epoch = tmp_path / "ds" / "epoch_03"
    epoch.mkdir(parents=True)
    path = _cut(long_bag.bag, epoch / "bag")
    salvaged = salvage(path).count()
    spare = tmp_path / "spare"
    spare.mkdir()
    copy = replayable(path, spare)
    assert revisit_label(copy) == "epoch_03"             # the revisit keeps its label
    with AnyReader([copy]) as reader:
        assert reader.message_count == salvaged
        assert {c.topic for c in reader.connections} >= {"/camera/color/image_raw", "/tf"}
    assert replayable(long_bag.bag, spare) == long_bag.bag        # an intact bag as it is
    caplog.clear()
    assert main(["replay", str(path), "--no-revisits", "--no-clock", "--rate", "50"]) == 0
    assert f": {salvaged} messages, " in capsys.readouterr().out
    assert sum("the bag is truncated" in r.getMessage() for r in caplog.records) == 1


def test_a_bag_truncated_before_its_first_message_is_one_line_naming_it(long_bag, tmp_path,
                                                                         capsys):
    path = _cut(long_bag.bag, tmp_path / "stub.mcap", keep=200)
    with pytest.raises(InputError, match="truncated and no message can be read") as err:
        list(read_bag_frames(path))
    assert str(path) in str(err.value)
    for args in (["run", str(path), "--out", str(tmp_path / "o"), "--quiet"],
                 ["replay", str(path)]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"stseg {args[0]}: {path}: the bag is truncated and no message")
        assert "\n" not in err and "Traceback" not in err
