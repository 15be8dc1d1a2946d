"""Fuse a revisit's RGB-D frames into one coloured scan (TSDF, Open3D).

Open3D's voxel block grid (sparse blocks of TSDF voxels, grown as the camera
sees new space) integrates a 640x480 frame in about 25 ms on two CPU cores,
and its surface points, with colours and normals, are the revisit's scan in
the frame the camera poses are given in (the revisit's odom frame).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import open3d as o3d

from stseg_ros.core.fields import setting
from stseg_ros.mapping.frames import RgbdFrame, check_frame

if TYPE_CHECKING:
    from stseg_ros.mapping.labels import LabelStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FusionConfig:
    voxel: float = setting(0.02, above=0)  # m, TSDF voxel size
    truncation_voxels: float = setting(4.0, above=0)  # SDF truncation in voxels
    depth_max: float = setting(4.5, above=0)  # m, farther depth is ignored (noisy)
    initial_blocks: int = setting(  # 8^3-voxel blocks reserved up front (the grid grows when
        20_000, low=1)              # needed)


@dataclass
class FusionStats:
    integrated: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    labels: LabelStats | None = None     # the robot's label images, when it sends them

    def skip(self, reason: str) -> bool:
        """Count a skipped frame; True the first time this reason comes up."""
        first = reason not in self.skipped
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        return first

    @property
    def dropped(self) -> int:
        return sum(self.skipped.values())


class TsdfFusion:
    """Integrates checked frames; ``scan()`` returns the fused points and colours."""

    def __init__(self, cfg: FusionConfig = FusionConfig()) -> None:
        self.cfg = cfg
        self.grid = o3d.t.geometry.VoxelBlockGrid(
            attr_names=("tsdf", "weight", "color"),
            attr_dtypes=(o3d.core.float32, o3d.core.float32, o3d.core.float32),
            attr_channels=(1, 1, 3), voxel_size=cfg.voxel, block_resolution=8,
            block_count=cfg.initial_blocks, device=o3d.core.Device("CPU:0"))
        self.stats = FusionStats()

    def integrate(self, frame: RgbdFrame) -> bool:
        """Fuse one frame; a frame that cannot be used is counted and logged, not fused."""
        reason = check_frame(frame)
        if reason is not None:
            if self.stats.skip(reason):        # a live stream would repeat it per frame
                log.warning("skipping frame %d: %s (further frames skipped for this reason "
                            "are only counted)", frame.stamp_ns, reason)
            return False
        depth = np.nan_to_num(frame.depth, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
        k = o3d.core.Tensor(frame.intrinsics.matrix, o3d.core.float64)
        extrinsic = o3d.core.Tensor(np.linalg.inv(frame.odom_from_camera), o3d.core.float64)
        depth_img = o3d.t.geometry.Image(o3d.core.Tensor(np.ascontiguousarray(depth)))
        color_img = o3d.t.geometry.Image(o3d.core.Tensor(
            np.ascontiguousarray(frame.color, dtype=np.float32) / 255.0))
        trunc = self.cfg.truncation_voxels          # Open3D takes it in voxels
        blocks = self.grid.compute_unique_block_coordinates(
            depth_img, k, extrinsic, 1.0, self.cfg.depth_max, trunc)
        self.grid.integrate(blocks, depth_img, color_img, k, k, extrinsic, 1.0,
                            self.cfg.depth_max, trunc)
        self.stats.integrated += 1
        return True

    def scan(self) -> tuple[np.ndarray, np.ndarray]:
        """Fused surface points (N, 3) float32 and colours (N, 3) uint8."""
        if self.stats.integrated == 0:
            return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8)
        cloud = self.grid.extract_point_cloud()
        xyz = cloud.point.positions.numpy().astype(np.float32)
        rgb = (np.clip(cloud.point.colors.numpy(), 0, 1) * 255).round().astype(np.uint8)
        # the grid's blocks come out in the order parallel insertion left them,
        # which differs from run to run; in a fixed order, everything downstream
        # (sampling, clustering) gives the same map for the same frames
        order = np.lexsort(xyz.T[::-1])
        return xyz[order], rgb[order]
