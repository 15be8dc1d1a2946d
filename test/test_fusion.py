"""Reading revisit bags into posed RGB-D frames, and fusing them into a scan."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial import cKDTree

from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset
from stseg_ros.core.camera import Intrinsics
from stseg_ros.core.images import decode_image
from stseg_ros.core.layout import read_cloud
from stseg_ros.mapping.drift import DriftConfig, FragmentFusion
from stseg_ros.mapping.frames import RgbdFrame, SkippedFrame
from stseg_ros.mapping.fusion import TsdfFusion
from stseg_ros.sources.rosbag import read_bag_frames


@pytest.fixture(scope="module")
def revisit(tmp_path_factory):
    out = tmp_path_factory.mktemp("fusion") / "ds"
    generate_dataset(out, GenerateConfig(seed=5, revisits=1, frames=10, workers=0),
                     progress=False)
    return out / "scene_000" / "epoch_00"


def test_bag_frames_fuse_onto_the_ground_truth_cloud(revisit):
    frames = list(read_bag_frames(revisit / "bag"))
    assert len(frames) == 10 and not any(isinstance(f, SkippedFrame) for f in frames)
    assert frames[0].intrinsics.width == 640 and frames[0].depth.dtype == np.float32
    fusion = TsdfFusion()
    for frame in frames:
        assert fusion.integrate(frame)
    xyz, rgb = fusion.scan()
    assert len(xyz) > 10_000 and rgb.dtype == np.uint8
    truth, _ = read_cloud(revisit)
    dist, _ = cKDTree(truth).query(xyz)
    assert np.median(dist) < 0.03              # fused surfaces lie on the true ones


def test_the_same_frames_fuse_into_the_same_scan_point_for_point(revisit):
    """The TSDF's blocks come out in whatever order parallel insertion left
    them; the scan is put in one order, so a rerun maps the same revisit to the
    same map (sampling and clustering downstream depend on point order)."""
    frames = list(read_bag_frames(revisit / "bag"))
    scans = []
    for _ in range(3):
        fusion = TsdfFusion()
        for frame in frames:
            fusion.integrate(frame)
        scans.append(fusion.scan())
    xyz, rgb = scans[0]
    assert (np.diff(xyz[:, 0]) >= 0).all()                    # x-major order
    for other_xyz, other_rgb in scans[1:]:
        assert np.array_equal(other_xyz, xyz) and np.array_equal(other_rgb, rgb)


def test_fragment_fusion_keeps_the_surface_and_a_cloud_per_fragment(revisit):
    frames = [f for f in read_bag_frames(revisit / "bag") if not isinstance(f, SkippedFrame)]
    fusion = FragmentFusion(drift=DriftConfig(fragment_frames=4))
    plain = TsdfFusion()
    for frame in frames:
        assert fusion.integrate(frame) and plain.integrate(frame)
    assert not fusion.integrate(_frame(depth=np.zeros((48, 64), np.float32)))
    scan = fusion.scan()
    assert fusion.stats.integrated == 10 and fusion.stats.dropped == 1
    assert scan.parts == 3                        # 4 + 4 + 2 frames
    xyz, _ = plain.scan()
    assert len(scan.xyz) == len(xyz)              # the same TSDF surface (in any order)
    assert cKDTree(xyz).query(scan.xyz)[0].max() < 1e-4
    truth, _ = read_cloud(revisit)
    for cloud in scan.fragments:                  # fragment clouds lie on the surfaces too
        dist, _ = cKDTree(truth).query(cloud)
        assert len(cloud) > 500 and np.median(dist) < 0.03


def _frame(**change):
    base = dict(stamp_ns=1, color=np.zeros((48, 64, 3), np.uint8),
                depth=np.full((48, 64), 1.5, np.float32),
                intrinsics=Intrinsics.default(0.1), odom_from_camera=np.eye(4))
    return RgbdFrame(**{**base, **change})


@pytest.mark.parametrize(("change", "reason"), [
    ({"depth": np.full((48, 64), np.nan, np.float32)}, "no valid pixel"),
    ({"depth": np.zeros((48, 64), np.float32)}, "no valid pixel"),
    ({"depth": np.ones((40, 64), np.float32)}, "sizes differ"),
    ({"intrinsics": None}, "camera_info"),
    ({"intrinsics": Intrinsics.default(0.2)}, "camera_info is"),
    ({"odom_from_camera": None}, "no camera pose"),
    ({"color": np.zeros((48, 64), np.uint8)}, "colour image has shape"),
])
def test_unusable_frames_are_skipped_with_a_reason(change, reason):
    fusion = TsdfFusion()
    assert fusion.integrate(_frame()) is True
    assert fusion.integrate(_frame(**change)) is False
    assert fusion.stats.integrated == 1 and fusion.stats.dropped == 1
    assert any(reason in r for r in fusion.stats.skipped)


def test_nan_pixels_inside_a_good_frame_are_ignored():
    depth = np.full((48, 64), 1.5, np.float32)
    depth[10:20] = np.nan
    fusion = TsdfFusion()
    assert fusion.integrate(_frame(depth=depth))
    assert np.isfinite(fusion.scan()[0]).all()


def test_image_encodings():
    def msg(encoding, data, step, bigendian=0):
        return SimpleNamespace(height=2, width=2, encoding=encoding, step=step,
                               is_bigendian=bigendian, data=np.frombuffer(data, np.uint8))
    rgb = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert np.array_equal(decode_image(msg("bgr8", rgb[..., ::-1].tobytes(), 6)), rgb)
    mm = np.array([[1000, 0], [2500, 65535]], "<u2")
    assert np.allclose(decode_image(msg("16UC1", mm.tobytes(), 4)), mm / 1000.0)
    metres = np.array([[1.5, np.nan], [0.0, 3.25]], ">f4")
    out = decode_image(msg("32FC1", metres.tobytes(), 8, bigendian=1))
    assert out[0, 0] == 1.5 and np.isnan(out[0, 1]) and out[1, 1] == 3.25
    with pytest.raises(ValueError, match="unsupported"):
        decode_image(msg("yuv422", b"\0" * 8, 4))
