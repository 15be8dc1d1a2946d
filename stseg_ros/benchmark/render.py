"""Ray-cast RGB-D frames of a scenario epoch with a depth-sensor model.

The sensor model follows what RealSense/Kinect-class cameras do: depth noise
growing with the square of depth, quantisation, missing returns at grazing
angles, on dark surfaces and beyond range, and flying pixels at depth edges.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import open3d as o3d

from stseg_ros.benchmark.furniture import Part
from stseg_ros.benchmark.scene import Epoch, Scenario, fixture_parts, object_pose
from stseg_ros.core.camera import Intrinsics
from stseg_ros.core.classes import class_id
from stseg_ros.core.pointcloud import planar_pose

MAX_RANGE = 5.0     # m; farther returns are missing
MIN_RANGE = 0.3
TEXTURES = {"plain": 0, "wood": 1, "fabric": 2, "leaf": 3, "screen": 4}


@dataclass
class Frame:
    """One rendered view: images plus per-pixel ground truth."""

    color: np.ndarray      # (H, W, 3) uint8
    depth: np.ndarray      # (H, W) float32 metres, 0 = missing
    instance: np.ndarray   # (H, W) int32, 0 = structure or no return
    semantic: np.ndarray   # (H, W) int32 NYU40 id, 0 = no return
    flying: np.ndarray     # (H, W) bool, depth mixed across an edge (label unreliable)


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
            # wall slab lies just outside the outline (the inside is to the left)
            centre = (p0 + p1) / 2 - np.array([-edge[1], edge[0]]) / length * 0.05
            pose = planar_pose(*centre, math.atan2(edge[1], edge[0]), h / 2)
            add([Part((0, 0, 0), (length + 0.1, 0.1, h), room.wall_color)], pose, 0,
                class_id("wall"), "plain")
        for name, placed in fixture_parts(room, epoch.door_angle).items():
            inst = scenario.door_id if name == "door" else scenario.window_id
            for pose, part in placed:
                add([part], pose, inst, class_id(name), "wood" if name == "door" else "plain")
        for obj in epoch.objects:
            style = scenario.styles[obj.style]
            add(list(style.parts), object_pose(obj), obj.id, style.class_id, style.texture)

        # one extra entry past the last geometry stands for "no hit": no labels, black
        self.miss = len(instances)
        self.instance = np.array([*instances, 0], dtype=np.int32)
        self.semantic = np.array([*semantics, 0], dtype=np.int32)
        self.color = np.array([*colors, (0.0, 0.0, 0.0)], dtype=np.float32)
        self.luminance = self.color.mean(1)
        self.texture = np.array([*textures, TEXTURES["plain"]], dtype=np.int32)

    def cast(self, camera_to_world: np.ndarray, intr: Intrinsics):
        """Normals (H, W, 3), geometry ids (``miss`` where nothing was hit), |cos|
        of the incidence angle, hit mask and depth (z in the camera frame, 0 = no hit)."""
        extrinsic = np.linalg.inv(camera_to_world)
        rays = self.scene.create_rays_pinhole(
            o3d.core.Tensor(intr.matrix), o3d.core.Tensor(extrinsic), intr.width, intr.height)
        ans = self.scene.cast_rays(rays)
        rays = rays.numpy()
        t = ans["t_hit"].numpy()
        hit = np.isfinite(t)
        geom = ans["geometry_ids"].numpy()
        geom[~hit] = self.miss
        # pinhole rays have z = 1 in the camera, so the ray parameter is the depth
        z = np.where(hit, t, np.float32(0.0))
        normals = ans["primitive_normals"].numpy()
        cos_inc = np.abs(np.einsum("...k,...k->...", normals, rays[..., 3:]))
        cos_inc *= _inverse_ray_length(intr)
        return normals, geom, cos_inc, hit, z


@functools.lru_cache(maxsize=4)
def _camera_rays(intr: Intrinsics) -> np.ndarray:
    """(H, W, 3) pinhole ray directions in the camera frame, scaled to z = 1."""
    v, u = np.mgrid[0:intr.height, 0:intr.width]
    x, y = (u - intr.cx) / intr.fx, (v - intr.cy) / intr.fy
    return np.stack([x, y, np.ones_like(x)], -1).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _inverse_ray_length(intr: Intrinsics) -> np.ndarray:
    return (1.0 / np.linalg.norm(_camera_rays(intr), axis=-1)).astype(np.float32)


# procedural patterns per texture id: brightness 1 + amplitude * sin(frequency . p)
PATTERN_AMPLITUDE = np.array([0.0, 0.12, 0.05, 0.25, 0.0], dtype=np.float32)
PATTERN_FREQUENCY = np.array([(0, 0, 0), (35, 6, 9), (120, 120, 80), (25, 31, 17), (0, 0, 0)],
                             dtype=np.float32)   # rad/m: wood grain, fabric weave, leaves


def _texture(kind: np.ndarray, camera_to_world: np.ndarray, intr: Intrinsics,
             depth: np.ndarray) -> np.ndarray:
    """Brightness factor of the procedural patterns at the hit points.

    The phase ``f . (o + depth * d)`` splits into ``f . o + depth * (f . d)``, and
    ``f . d`` for every pattern is one small matrix product over the cached rays.
    """
    rotation, origin = camera_to_world[:3, :3], camera_to_world[:3, 3]
    per_pattern = _camera_rays(intr) @ (rotation.T @ PATTERN_FREQUENCY.T).astype(np.float32)
    slope = np.take_along_axis(per_pattern, kind[..., None], axis=-1)[..., 0]
    offset = (PATTERN_FREQUENCY @ origin).astype(np.float32)
    phase = np.take(offset, kind) + depth * slope
    return 1 + np.take(PATTERN_AMPLITUDE, kind) * np.sin(phase)


class NoiseBank:
    """Pre-drawn Gaussian noise, read at random offsets: per-frame noise without
    drawing a million normals per frame (the slowest part of a render otherwise)."""

    def __init__(self, rng: np.random.Generator, size: int = 1 << 22) -> None:
        self.values = rng.standard_normal(size, dtype=np.float32)

    def draw(self, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
        n = int(np.prod(shape))
        if n > len(self.values):
            return rng.standard_normal(shape, dtype=np.float32)
        start = int(rng.integers(len(self.values) - n + 1))
        return self.values[start:start + n].reshape(shape)


def render_frame(caster: SceneRaycaster, camera_to_world: np.ndarray, intr: Intrinsics,
                 epoch: Epoch, rng: np.random.Generator,
                 noise: NoiseBank | None = None) -> Frame:
    """Render one view with the sensor model (noise from ``rng``)."""
    noise = noise or NoiseBank(rng, 1)
    normals, g, cos_inc, hit, z = caster.cast(camera_to_world, intr)
    # colour: albedo * texture * Lambert shading * exposure + noise (black where no hit)
    light = -np.asarray(epoch.light, dtype=np.float32)
    shade = 0.35 + 0.65 * np.clip(np.abs(normals @ light), 0, 1)
    texture = _texture(caster.texture[g], camera_to_world, intr, z)
    albedo = np.take(caster.color, g, axis=0) * texture[..., None]
    rgb = albedo * (shade * (255.0 * epoch.exposure))[..., None]
    rgb += (0.012 * 255.0) * noise.draw(rgb.shape, rng)
    rgb *= hit[..., None]
    color = np.clip(rgb, 0, 255, out=rgb).astype(np.uint8)

    # depth sensor model
    sigma = 0.0012 + 0.0019 * (z - 0.4) ** 2
    depth = z + noise.draw(z.shape, rng) * sigma
    step = 0.0025 * depth ** 2 + 0.001            # disparity-like quantisation
    depth = np.round(depth / step) * step
    luminance = caster.luminance[g]
    u = rng.random(z.shape, dtype=np.float32)
    missing = ~hit | (z < MIN_RANGE) | (z > MAX_RANGE) | (cos_inc < 0.12)
    missing |= (luminance < 0.09) & (u < 0.7)
    missing |= u > 0.99
    # flying pixels: mixed depth at discontinuities
    jump = np.zeros_like(z, dtype=bool)
    jump[:, 1:] |= np.abs(np.diff(z, axis=1)) > 0.15
    jump[1:, :] |= np.abs(np.diff(z, axis=0)) > 0.15
    flying = jump & (u < 0.5) & ~missing
    depth[flying] *= rng.uniform(0.85, 1.15, int(flying.sum())).astype(np.float32)
    depth = np.where(missing, 0.0, depth).astype(np.float32)

    return Frame(color, depth, caster.instance[g], caster.semantic[g], flying)
