"""Fused scans from elsewhere (another SLAM system, a LiDAR, a mesh): one PLY,
PCD or NPZ file per revisit, points and colours taken as they are.

PLY and PCD are read with Open3D (a mesh PLY gives its vertices); an NPZ
holds ``xyz`` (N, 3) and optionally ``rgb`` (N, 3) uint8, as ``cloud.npz``
of the dataset layout. Non-finite points are dropped and counted; clouds
are thinned to one point per ``cloud_voxel`` so a dense LiDAR map costs what
a fused scan does.
"""

from __future__ import annotations

import logging

import numpy as np

from stseg_ros.core.layout import load_npz
from stseg_ros.core.pointcloud import MAX_COORDINATE, usable_points, voxel_downsample
from stseg_ros.sources.base import InputError, Source

log = logging.getLogger(__name__)
SUFFIXES = (".ply", ".pcd", ".npz")


def read_cloud_file(path, voxel: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """xyz (N, 3) float32 and rgb (N, 3) uint8 of a PLY / PCD / NPZ file."""
    suffix = path.suffix.lower()
    if suffix == ".npz":
        npz = load_npz(path, ("xyz", "rgb"), InputError)
        if "xyz" not in npz:
            raise InputError(f"{path}: no array 'xyz' (expected xyz (N, 3), rgb (N, 3))")
        if npz["xyz"].dtype.kind not in "fiu":
            raise InputError(f"{path}: xyz holds {npz['xyz'].dtype}, expected numbers")
        xyz = np.asarray(npz["xyz"], np.float64)
        rgb = npz.get("rgb")
        if rgb is not None and rgb.dtype.kind not in "fiu":
            raise InputError(f"{path}: rgb holds {rgb.dtype}, expected numbers (0-255)")
    elif suffix in (".ply", ".pcd"):
        import open3d as o3d

        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            pc = o3d.io.read_point_cloud(str(path))
        xyz = np.asarray(pc.points, np.float64)
        if not len(xyz):
            raise InputError(f"{path}: no points could be read (not a {suffix[1:].upper()} "
                             "point cloud or mesh, or empty)")
        rgb = (np.asarray(pc.colors) * 255).round() if pc.has_colors() else None
    else:
        raise InputError(f"{path}: not a point cloud file ({', '.join(SUFFIXES)})")
    if xyz.ndim != 2 or xyz.shape[1] != 3:
        raise InputError(f"{path}: xyz has shape {xyz.shape}, expected (N, 3)")
    if rgb is None:
        rgb = np.full((len(xyz), 3), 128)
    if rgb.shape != xyz.shape:
        raise InputError(f"{path}: rgb has shape {rgb.shape}, xyz {xyz.shape}")
    finite = usable_points(xyz)
    if not finite.all():
        log.warning("%s: %d of %d points are not finite or beyond %g m and were dropped",
                    path, int((~finite).sum()), len(xyz), MAX_COORDINATE)
        xyz, rgb = xyz[finite], rgb[finite]
    if len(xyz) < 100:
        raise InputError(f"{path}: {len(xyz)} usable points, too few for a scan")
    if voxel > 0:
        keep = voxel_downsample(xyz, voxel)
        xyz, rgb = xyz[keep], rgb[keep]
    return xyz.astype(np.float32), np.clip(rgb, 0, 255).astype(np.uint8)


class CloudSource(Source):
    name = "cloud"
    description = "fused scan: one PLY / PCD / NPZ point cloud or mesh"

    @classmethod
    def detect(cls, path) -> bool:
        return path.is_file() and path.suffix.lower() in SUFFIXES

    def revisits(self):
        return [self.revisit(cloud=lambda: read_cloud_file(self.path, self.cfg.cloud_voxel))]
