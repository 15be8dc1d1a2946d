"""Ray-cast RGB-D frames of a scenario epoch with a depth-sensor model.

The sensor model follows what RealSense/Kinect-class cameras do: depth noise
growing with the square of depth, quantisation, missing returns at grazing
angles, on dark surfaces and beyond range, and flying pixels at depth edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from stseg_ros.core.classes import class_id
from stseg_ros.datasets.furniture import Part
from stseg_ros.datasets.scene import Epoch, Scenario, fixture_parts, object_pose

WIDTH, HEIGHT = 640, 480
FX = FY = 525.0
MAX_RANGE = 5.0     # m; farther returns are missing
MIN_RANGE = 0.3
TEXTURES = {"plain": 0, "wood": 1, "fabric": 2, "leaf": 3, "screen": 4}


@dataclass(frozen=True)
class Intrinsics:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def default(cls, scale: float = 1.0) -> Intrinsics:
        w, h = int(WIDTH * scale), int(HEIGHT * scale)
        return cls(w, h, FX * scale, FY * scale, (w - 1) / 2, (h - 1) / 2)

    @property
    def matrix(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])


@dataclass
class Frame:
    """One rendered view: images plus per-pixel ground truth."""

    color: np.ndarray      # (H, W, 3) uint8
    depth: np.ndarray      # (H, W) float32 metres, 0 = missing
    instance: np.ndarray   # (H, W) int32, 0 = structure or no return
    semantic: np.ndarray   # (H, W) int32 NYU40 id, 0 = no return


class SceneRaycaster:
    """Open3D ray-casting scene of one epoch with per-triangle labels and colours."""

    def __init__(self, scenario: Scenario, epoch: Epoch) -> None:
        self.scene = o3d.t.geometry.RaycastingScene()
        instances, semantics, colors, textures = [], [], [], []

        def add(parts: list[Part], pose: np.ndarray, inst: int, sem: int, texture: str):
            for part in parts:
                mesh = o3d.geometry.TriangleMesh.create_box(*part.size)
                mesh.translate(np.array(part.center) - np.array(part.size) / 2)
                mesh.transform(pose)
                self.scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
                instances.append(inst)
                semantics.append(sem)
                colors.append(part.color)
                textures.append(TEXTURES[texture])

        room = scenario.room
        poly, h = room.polygon, room.height
        lo, hi = poly.min(0), poly.max(0)
        # floor and ceiling slabs over the bounding box, walls along the outline
        floor = Part(((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, -0.05),
                     (hi[0] - lo[0] + 0.4, hi[1] - lo[1] + 0.4, 0.1), room.floor_color)
        ceiling = Part((floor.center[0], floor.center[1], h + 0.05), floor.size,
                       (0.93, 0.93, 0.92))
        add([floor], np.eye(4), 0, class_id("floor"), "wood")
        add([ceiling], np.eye(4), 0, class_id("ceiling"), "plain")
        for i in range(len(poly)):
            p0, p1 = room.wall(i)
            edge = p1 - p0
            length = float(np.linalg.norm(edge))
            yaw = math.atan2(edge[1], edge[0])
            c, s = math.cos(yaw), math.sin(yaw)
            pose = np.eye(4)
            pose[:2, :2] = [[c, -s], [s, c]]
            # wall slab lies just outside the outline (the inside is to the left)
            centre = (p0 + p1) / 2 - np.array([-edge[1], edge[0]]) / length * 0.05
            pose[:3, 3] = (centre[0], centre[1], h / 2)
            add([Part((0, 0, 0), (length + 0.1, 0.1, h), room.wall_color)], pose, 0,
                class_id("wall"), "plain")
        for name, placed in fixture_parts(room, epoch.door_angle).items():
            inst = scenario.door_id if name == "door" else scenario.window_id
            for pose, part in placed:
                add([part], pose, inst, class_id(name), "wood" if name == "door" else "plain")
        for obj in epoch.objects:
            style = scenario.styles[obj.style]
            add(list(style.parts), object_pose(obj), obj.id, style.class_id, style.texture)

        self.instance = np.array(instances, dtype=np.int32)
        self.semantic = np.array(semantics, dtype=np.int32)
        self.color = np.array(colors, dtype=np.float32)
        self.texture = np.array(textures, dtype=np.int32)

    def cast(self, camera_to_world: np.ndarray, intr: Intrinsics):
        """Hit points (H, W, 3, world), normals, geometry ids and view rays."""
        extrinsic = np.linalg.inv(camera_to_world)
        rays = self.scene.create_rays_pinhole(
            o3d.core.Tensor(intr.matrix), o3d.core.Tensor(extrinsic), intr.width, intr.height)
        ans = self.scene.cast_rays(rays)
        rays = rays.numpy()
        t = ans["t_hit"].numpy()
        geom = ans["geometry_ids"].numpy().astype(np.int64)
        normals = ans["primitive_normals"].numpy()
        points = rays[..., :3] + rays[..., 3:] * t[..., None]
        return points, normals, geom, rays[..., 3:], np.isfinite(t)


def _texture(kind: np.ndarray, p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    out = np.ones(kind.shape, dtype=np.float32)
    wood = kind == TEXTURES["wood"]
    out[wood] = 1 + 0.12 * np.sin(35 * x[wood] + 6 * np.sin(3 * y[wood]) + 9 * z[wood])
    fabric = kind == TEXTURES["fabric"]
    out[fabric] = 1 + 0.05 * np.sin(120 * x[fabric]) * np.sin(120 * y[fabric] + 80 * z[fabric])
    leaf = kind == TEXTURES["leaf"]
    out[leaf] = 1 + 0.25 * np.sin(25 * x[leaf]) * np.sin(25 * y[leaf] + 17 * z[leaf])
    return out


def render_frame(caster: SceneRaycaster, camera_to_world: np.ndarray, intr: Intrinsics,
                 epoch: Epoch, rng: np.random.Generator) -> Frame:
    """Render one view with the sensor model (noise from ``rng``)."""
    points, normals, geom, dirs, hit = caster.cast(camera_to_world, intr)
    g = np.where(hit, geom, 0)
    # depth = z in the camera frame
    world_to_cam = np.linalg.inv(camera_to_world)
    z = points @ world_to_cam[2, :3] + world_to_cam[2, 3]
    z = np.where(hit, z, 0.0)
    # colour: albedo * texture * Lambert shading * exposure + noise
    light = -np.array(epoch.light)
    shade = 0.35 + 0.65 * np.clip(np.abs(normals @ light), 0, 1)
    albedo = caster.color[g] * _texture(caster.texture[g], points, rng)[..., None]
    rgb = albedo * shade[..., None] * epoch.exposure
    rgb += rng.normal(0, 0.012, rgb.shape)
    rgb = np.where(hit[..., None], rgb, 0.0)
    color = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)

    # depth sensor model
    sigma = 0.0012 + 0.0019 * (z - 0.4) ** 2
    depth = z + rng.normal(0, 1, z.shape) * sigma
    step = 0.0025 * depth ** 2 + 0.001            # disparity-like quantisation
    depth = np.round(depth / step) * step
    cos_inc = np.abs(np.sum(normals * dirs, -1)) / np.maximum(np.linalg.norm(dirs, axis=-1), 1e-9)
    luminance = albedo.mean(-1)
    missing = ~hit | (z < MIN_RANGE) | (z > MAX_RANGE) | (cos_inc < 0.12)
    missing |= (luminance < 0.09) & (rng.random(z.shape) < 0.7)
    missing |= rng.random(z.shape) < 0.01
    # flying pixels: mixed depth at discontinuities
    jump = np.zeros_like(z, dtype=bool)
    jump[:, 1:] |= np.abs(np.diff(z, axis=1)) > 0.15
    jump[1:, :] |= np.abs(np.diff(z, axis=0)) > 0.15
    flying = jump & (rng.random(z.shape) < 0.5) & ~missing
    depth[flying] *= rng.uniform(0.85, 1.15, int(flying.sum()))
    depth = np.where(missing, 0.0, depth).astype(np.float32)

    instance = np.where(hit, caster.instance[g], 0).astype(np.int32)
    semantic = np.where(hit, caster.semantic[g], 0).astype(np.int32)
    return Frame(color, depth, instance, semantic)


def backproject(depth: np.ndarray, intr: Intrinsics, camera_to_world: np.ndarray,
                stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """World points of valid depth pixels and their flat pixel indices."""
    v, u = np.mgrid[0:intr.height:stride, 0:intr.width:stride]
    z = depth[v, u]
    valid = z > 0
    u, v, z = u[valid], v[valid], z[valid]
    cam = np.stack([(u - intr.cx) * z / intr.fx, (v - intr.cy) * z / intr.fy, z], -1)
    world = cam @ camera_to_world[:3, :3].T + camera_to_world[:3, 3]
    return world, v * intr.width + u
