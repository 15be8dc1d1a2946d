"""The evolving-room generator: layout, ground truth, bags, previews, determinism."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset
from stseg_ros.benchmark.scene import make_scenario
from stseg_ros.benchmark.trajectory import _inside_quads, plan_trajectory
from stseg_ros.cli import main
from stseg_ros.core.layout import open_dataset, read_cloud, read_epoch_result
from stseg_ros.core.pointcloud import transform_points


@pytest.fixture(scope="module")
def fast_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("fast") / "ds"
    assert main(["generate", "--out", str(out), "--seed", "4", "--revisits", "3", "--rooms",
                 "2", "--frames", "0", "--preview", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def frame_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("frames") / "ds"
    generate_dataset(out, GenerateConfig(seed=3, revisits=2, frames=8, workers=2),
                     progress=False)
    return out


def test_fast_dataset_layout_and_ground_truth(fast_dataset):
    index = open_dataset(fast_dataset)
    assert index.scenes == ["scene_000", "scene_001"]
    for scene in index.scenes:
        info = index.scene_info(scene)
        assert info["epochs"] == 3 and len(info["polygon"]) in (4, 6)
        transforms = []
        for t, name in enumerate(index.epochs(scene)):
            epoch_dir = fast_dataset / scene / name
            xyz, rgb = read_cloud(epoch_dir)
            truth = read_epoch_result(epoch_dir, num_points=len(xyz))
            assert len(xyz) > 20_000 and rgb.dtype == np.uint8
            assert np.isfinite(xyz).all()
            labelled = set(np.unique(truth.instance_id).tolist()) - {0}
            assert labelled <= set(truth.instances)
            assert len(labelled) >= 5                    # furniture is seen and labelled
            # objects carry their class on every one of their points
            for i in labelled:
                assert set(np.unique(truth.class_id[truth.instance_id == i])) == {
                    truth.instances[i].class_id}
            assert all(c.kind in ("added", "removed", "moved") for c in truth.changes)
            if t == 0:
                assert {c.kind for c in truth.changes} == {"added"}
            transforms.append(truth.map_from_odom)
            assert (epoch_dir / "preview.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert not (epoch_dir / "bag").exists()      # fast mode writes no bags
        # every revisit starts in its own odometry frame, offset from the map
        starts = [tuple(np.round(T[:2, 3], 3)) for T in transforms]
        assert len(set(starts)) == 3


def test_cloud_is_in_odom_frame_and_agrees_with_the_map_after_the_true_offset(fast_dataset):
    """Static structure seen in two revisits coincides once each is moved into the map."""
    scene = fast_dataset / "scene_000"
    clouds = []
    for t in (0, 1):
        xyz, _ = read_cloud(scene / f"epoch_{t:02d}")
        truth = read_epoch_result(scene / f"epoch_{t:02d}")
        walls = truth.class_id == 1
        clouds.append(transform_points(truth.map_from_odom, xyz[walls].astype(float)))
    dist, _ = cKDTree(clouds[0]).query(clouds[1])
    assert np.median(dist) < 0.03          # the same walls, up to 3 cm voxels and noise
    raw1, _ = read_cloud(scene / "epoch_01")
    dist_raw, _ = cKDTree(clouds[0]).query(raw1[::50])
    assert np.median(dist_raw) > 0.1       # without the offset they do not


def test_generation_is_deterministic_per_seed(tmp_path, fast_dataset):
    cfg = GenerateConfig(seed=4, revisits=2, rooms=1, frames=0)
    generate_dataset(tmp_path / "again", cfg, progress=False)
    generate_dataset(tmp_path / "other", GenerateConfig(seed=5, revisits=2, frames=0),
                     progress=False)
    a, _ = read_cloud(fast_dataset / "scene_000" / "epoch_01")
    b, _ = read_cloud(tmp_path / "again" / "scene_000" / "epoch_01")
    c, _ = read_cloud(tmp_path / "other" / "scene_000" / "epoch_01")
    assert np.array_equal(a, b)
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_frames_do_not_depend_on_the_number_of_workers(tmp_path):
    for workers in (0, 2):
        generate_dataset(tmp_path / f"w{workers}", GenerateConfig(
            seed=9, revisits=1, frames=3, workers=workers), progress=False)
    a, _ = read_cloud(tmp_path / "w0" / "scene_000" / "epoch_00")
    b, _ = read_cloud(tmp_path / "w2" / "scene_000" / "epoch_00")
    assert np.array_equal(a, b)


def test_refuses_to_overwrite_and_rejects_bad_arguments(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    assert main(["generate", "--out", str(tmp_path / "taken"), "--seed", "1", "--frames",
                 "0", "--quiet"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"
    assert main(["generate", "--out", str(tmp_path / "x"), "--seed", "1", "--revisits", "0",
                 "--quiet"]) == 2
    assert "--revisits" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_trajectory_keeps_clear_of_furniture_and_partial_coverage_sees_less():
    scenario = make_scenario(np.random.default_rng(11), 1)
    epoch = scenario.epochs[0]
    full = plan_trajectory(scenario, epoch, 400, np.random.default_rng(0))
    quads = [o.corners(scenario.styles) for o in epoch.objects]
    assert not _inside_quads(full.base[:, :2], quads).any()
    path = np.linalg.norm(np.diff(full.base[:, :2], axis=0), axis=1).sum()
    assert path > 3.0
    # odometry starts at zero and drifts by centimetres, not metres
    assert np.allclose(full.odometry[0], 0.0)
    start = full.map_from_odom
    truth = transform_points(np.linalg.inv(start),
                             np.c_[full.base[:, :2], np.zeros(len(full.base))])
    drift = np.linalg.norm(truth[:, :2] - full.odometry[:, :2], axis=1).max()
    assert drift < 0.05 * path
    epoch.coverage = 0.5
    part = plan_trajectory(scenario, epoch, 400, np.random.default_rng(0))
    assert _area(part.base) < 0.8 * _area(full.base)


def test_frame_dataset_bag_matches_ground_truth(frame_dataset):
    from rosbags.rosbag2 import Reader
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    info = json.loads((frame_dataset / "dataset.json").read_text())
    epoch_dir = frame_dataset / "scene_000" / "epoch_01"
    msgs: dict[str, list] = {}
    with Reader(epoch_dir / "bag") as bag:
        assert list((epoch_dir / "bag").glob("*.mcap"))
        for conn, stamp, raw in bag.messages():
            msgs.setdefault(conn.topic, []).append((stamp, ts.deserialize_cdr(raw, conn.msgtype)))
    topics = info["topics"]
    assert len(msgs[topics["color"]]) == 8 and len(msgs[topics["depth"]]) == 8
    assert len(msgs[topics["odometry"]]) == 32 and len(msgs[topics["tf_static"]]) == 1
    color, depth = msgs[topics["color"]][3][1], msgs[topics["depth"]][3][1]
    assert (color.encoding, color.width, color.height) == ("rgb8", 640, 480)
    assert depth.encoding == "16UC1" and depth.header.frame_id == color.header.frame_id
    k = msgs[topics["camera_info"]][0][1].k.reshape(3, 3)
    assert k[0, 0] == info["intrinsics"]["fx"] and k[1, 2] == info["intrinsics"]["cy"]
    stamps = [s for s, _ in msgs[topics["odometry"]]]
    assert stamps == sorted(stamps)
    first = msgs[topics["odometry"]][0][1].pose.pose.position
    assert (first.x, first.y) == (0.0, 0.0)              # odometry starts where the robot did

    # back-project frame 3 with the bag's own poses: it lands on the ground-truth cloud
    stamp = msgs[topics["depth"]][3][0]
    odom = dict(msgs[topics["odometry"]])[stamp].pose.pose
    yaw = 2 * math.atan2(odom.orientation.z, odom.orientation.w)
    base = np.eye(4)
    base[:2, :2] = [[math.cos(yaw), -math.sin(yaw)], [math.sin(yaw), math.cos(yaw)]]
    base[:2, 3] = (odom.position.x, odom.position.y)
    tf = msgs[topics["tf_static"]][0][1].transforms[0].transform
    q = tf.rotation
    rot = _quat_to_matrix(q.x, q.y, q.z, q.w)
    mount = np.eye(4)
    mount[:3, :3], mount[:3, 3] = rot, (tf.translation.x, tf.translation.y, tf.translation.z)
    d = np.frombuffer(depth.data, "<u2").reshape(480, 640).astype(float) / 1000.0
    v, u = np.nonzero(d[::8, ::8])
    v, u = v * 8, u * 8
    z = d[v, u]
    cam = np.c_[(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z]
    world = transform_points(base @ mount, cam)
    xyz, _ = read_cloud(epoch_dir)
    dist, _ = cKDTree(xyz).query(world)
    assert np.median(dist) < 0.03


def test_frame_dataset_scores_perfectly_against_itself(frame_dataset, tmp_path, capsys):
    out = tmp_path / "metrics.json"
    assert main(["eval", str(frame_dataset), str(frame_dataset), "--json", str(out),
                 "--quiet"]) == 0
    metrics = json.loads(out.read_text())
    for key in ("mAP", "AP50", "AP25", "t_mAP", "t_AP50", "t_AP25"):
        assert metrics[key] == 1.0
    assert metrics["reg_rot_err_deg"] == 0.0 and metrics["id_switches"] == 0
    assert "t_mAP" in capsys.readouterr().out


def _area(base: np.ndarray) -> float:
    return float(np.ptp(base[:, 0]) * np.ptp(base[:, 1]))


def _quat_to_matrix(x, y, z, w):
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
