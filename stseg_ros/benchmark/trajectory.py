"""Robot trajectories through a room, the camera on them, and drifting odometry.

A revisit is a ground robot driving a collision-free loop through the part of
the room it covers, its RGB-D camera at robot height sweeping left and right
while looking into the room. The robot's odometry starts at zero where it
starts (it rebooted), so each revisit's ``odom`` frame is offset from the map
by the unknown start pose, and it drifts: a per-revisit scale error, a yaw
bias per metre and small white noise. Frames follow REP 103/105: base_link
x forward, z up; the optical frame z forward, x right, y down.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from stseg_ros.benchmark.scene import Epoch, Scenario, fixture_parts, inside_polygon
from stseg_ros.core.pointcloud import planar_pose

GRID = 0.1                 # m, free-space grid resolution
ROBOT_RADIUS = 0.35        # m, clearance kept from furniture
WALL_CLEARANCE = 0.45      # m
FRAME_RATE = 5.0           # Hz, camera frames in a bag
ODOM_PER_FRAME = 4         # odometry messages per camera frame (20 Hz)
# base_link -> optical frame: x right = -y_base, y down = -z_base, z forward = x_base
OPTICAL_FROM_LINK = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float).T


@dataclass(frozen=True)
class CameraMount:
    """Where the camera sits on the robot (static transform base_link -> camera)."""

    height: float          # m above the floor
    forward: float         # m ahead of the base centre
    pitch: float           # rad, positive looks down

    def base_to_optical(self) -> np.ndarray:
        """4x4 pose of the optical frame in base_link."""
        c, s = math.cos(self.pitch), math.sin(self.pitch)
        pitch = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # about +y: +x tilts down
        out = np.eye(4)
        out[:3, :3] = pitch @ OPTICAL_FROM_LINK
        out[:3, 3] = (self.forward, 0.0, self.height)
        return out


@dataclass
class Trajectory:
    """Base poses (x, y, yaw) in the map frame at evenly spaced times, and the mount."""

    base: np.ndarray       # (N, 3) true poses in the map frame
    mount: CameraMount
    odometry: np.ndarray   # (N, 3) drifting estimate in the revisit's odom frame

    @property
    def map_from_odom(self) -> np.ndarray:
        """The revisit's unknown offset: 4x4 pose of odom in the map (the start pose)."""
        return planar_pose(*self.base[0])

    def camera_poses(self, estimated: bool = False) -> np.ndarray:
        """(N, 4, 4) optical-frame poses: true in the map frame, or odometry in odom."""
        poses = self.odometry if estimated else self.base
        optical = self.mount.base_to_optical()
        return np.stack([planar_pose(*p) @ optical for p in poses])


# --- free space -----------------------------------------------------------------

def _distance_to_outline(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    best = np.full(len(points), np.inf)
    for p0, p1 in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        edge = p1 - p0
        t = np.clip((points - p0) @ edge / (edge @ edge), 0, 1)
        best = np.minimum(best, np.linalg.norm(points - (p0 + t[:, None] * edge), axis=1))
    return best


def _inside_quads(points: np.ndarray, quads: list[np.ndarray]) -> np.ndarray:
    """Whether points lie in any convex quad (4, 2), either winding."""
    hit = np.zeros(len(points), dtype=bool)
    for q in quads:
        signs = []
        for i in range(4):
            a, b = q[i], q[(i + 1) % 4]
            signs.append((b[0] - a[0]) * (points[:, 1] - a[1])
                         - (b[1] - a[1]) * (points[:, 0] - a[0]))
        signs = np.stack(signs)
        hit |= (signs >= 0).all(0) | (signs <= 0).all(0)
    return hit


def _obstacles(scenario: Scenario, epoch: Epoch, margin: float) -> list[np.ndarray]:
    quads = [o.corners(scenario.styles, margin) for o in epoch.objects]
    for pose, part in fixture_parts(scenario.room, epoch.door_angle)["door"]:
        hx, hy = part.size[0] / 2 + margin, part.size[1] / 2 + margin
        local = np.array([(-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)])
        quads.append(local @ pose[:2, :2].T + pose[:2, 3])
    return quads


def free_cells(scenario: Scenario, epoch: Epoch, clearance: float = ROBOT_RADIUS):
    """Cell centres (M, 2) where the robot fits, and their integer grid indices (M, 2)."""
    room = scenario.room
    lo, hi = room.polygon.min(0), room.polygon.max(0)
    ij = np.stack(np.meshgrid(np.arange(int((hi[0] - lo[0]) / GRID) + 1),
                              np.arange(int((hi[1] - lo[1]) / GRID) + 1), indexing="ij"),
                  -1).reshape(-1, 2)
    xy = lo + (ij + 0.5) * GRID
    ok = inside_polygon(xy, room.polygon)
    ok &= _distance_to_outline(xy, room.polygon) >= max(WALL_CLEARANCE, clearance)
    ok[ok] &= ~_inside_quads(xy[ok], _obstacles(scenario, epoch, clearance))
    return xy[ok], ij[ok]


def _components(ij: np.ndarray) -> list[np.ndarray]:
    """8-connected components of grid cells, largest first (indices into ij)."""
    index = {tuple(c): k for k, c in enumerate(ij.tolist())}
    seen = np.zeros(len(ij), dtype=bool)
    parts = []
    for start in range(len(ij)):
        if seen[start]:
            continue
        seen[start] = True
        queue, members = deque([start]), [start]
        while queue:
            i, j = ij[queue.popleft()]
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    k = index.get((i + di, j + dj))
                    if k is not None and not seen[k]:
                        seen[k] = True
                        queue.append(k)
                        members.append(k)
        parts.append(np.array(members))
    return sorted(parts, key=len, reverse=True)


def _shortest_path(index: dict[tuple[int, int], int], ij: np.ndarray, a: int,
                   b: int) -> list[int]:
    """Breadth-first path between two cells of one component (indices into ij)."""
    parent = {a: a}
    queue = deque([a])
    while queue:
        k = queue.popleft()
        if k == b:
            break
        i, j = ij[k]
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (1, -1), (-1, 1), (-1, -1)):
            n = index.get((i + di, j + dj))
            if n is not None and n not in parent:
                parent[n] = k
                queue.append(n)
    path = [b]
    while path[-1] != a:
        path.append(parent[path[-1]])
    return path[::-1]


def _loop(xy: np.ndarray, ij: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A closed drive through spread-out waypoints of one free component."""
    if len(xy) < 3:
        centre = xy.mean(0)
        return np.array([centre, centre + 1e-3])
    waypoints = [int(rng.integers(len(xy)))]
    dist = np.linalg.norm(xy - xy[waypoints[0]], axis=1)
    for _ in range(min(6, len(xy)) - 1):     # farthest-point sampling
        waypoints.append(int(dist.argmax()))
        dist = np.minimum(dist, np.linalg.norm(xy - xy[waypoints[-1]], axis=1))
    centre = xy.mean(0)
    waypoints.sort(key=lambda k: math.atan2(*(xy[k] - centre)[::-1]))
    cells: list[int] = []
    index = {tuple(c): k for k, c in enumerate(ij.tolist())}
    for a, b in zip(waypoints, waypoints[1:] + waypoints[:1], strict=True):
        cells.extend(_shortest_path(index, ij, a, b)[:-1])
    cells.append(cells[0])
    path = xy[cells]
    kernel = np.ones(5) / 5           # soften grid corners; stays within free cells' hull
    padded = np.concatenate([path[-3:-1], path, path[1:3]])
    smooth = np.stack([np.convolve(padded[:, d], kernel, "valid") for d in (0, 1)], -1)
    return smooth


def _resample(path: np.ndarray, n: int) -> np.ndarray:
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] < 1e-6:
        return np.repeat(path[:1], n, axis=0)
    t = np.linspace(0, s[-1], n)
    return np.stack([np.interp(t, s, path[:, d]) for d in (0, 1)], -1)


def plan_trajectory(scenario: Scenario, epoch: Epoch, samples: int,
                    rng: np.random.Generator) -> Trajectory:
    """A revisit's drive: ``samples`` evenly timed base poses covering ``epoch.coverage``."""
    for clearance in (ROBOT_RADIUS, 0.2, 0.05):
        xy, ij = free_cells(scenario, epoch, clearance)
        if len(xy):
            break
    else:  # a room packed wall to wall: turn on the spot in its middle
        xy = scenario.room.polygon.mean(0)[None]
        ij = np.zeros((1, 2), dtype=int)
    if epoch.coverage < 1.0 and len(xy) > 10:   # keep the part on one side of the room
        angle = rng.uniform(-math.pi, math.pi)
        proj = xy @ np.array([math.cos(angle), math.sin(angle)])
        keep = proj <= np.quantile(proj, epoch.coverage)
        xy, ij = xy[keep], ij[keep]
    main = _components(ij)[0]
    xy, ij = xy[main], ij[main]
    position = _resample(_loop(xy, ij, rng), samples)
    # look at the covered part's centre, sweeping +-70 degrees three times per loop
    target = xy.mean(0)
    to_target = target - position
    heading = np.arctan2(to_target[:, 1], to_target[:, 0])
    near = np.linalg.norm(to_target, axis=1) < 0.5     # no spinning on top of the target
    heading[near] = np.interp(np.flatnonzero(near), np.flatnonzero(~near), heading[~near]) \
        if (~near).any() else 0.0
    heading = np.unwrap(heading)
    phase = np.linspace(0, 3 * 2 * math.pi, samples) + rng.uniform(0, 2 * math.pi)
    yaw = heading + math.radians(70) * np.sin(phase)
    base = np.concatenate([position, yaw[:, None]], 1)
    mount = CameraMount(height=float(rng.uniform(0.9, 1.3)), forward=0.12,
                        pitch=math.radians(rng.uniform(8, 22)))
    return Trajectory(base, mount, drifting_odometry(base, rng))


def drifting_odometry(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Integrate noisy increments of the true poses from zero (the odom frame).

    Per revisit: scale error N(0, 0.2 %), yaw bias N(0, 0.04 deg/m); per step white
    noise of 0.3 % of the step and 0.02 deg. Over a 20 m loop that is typically
    2-10 cm and under a degree, like wheel odometry fused with a gyro.
    """
    scale = 1.0 + rng.normal(0, 0.002)
    yaw_bias = math.radians(rng.normal(0, 0.04))
    out = np.zeros_like(base)
    for k in range(1, len(base)):
        x0, y0, a0 = base[k - 1]
        x1, y1, a1 = base[k]
        c, s = math.cos(a0), math.sin(a0)
        dx, dy = c * (x1 - x0) + s * (y1 - y0), -s * (x1 - x0) + c * (y1 - y0)
        da = math.atan2(math.sin(a1 - a0), math.cos(a1 - a0))
        dist = math.hypot(dx, dy)
        dx, dy = dx * scale + rng.normal(0, 0.003 * dist), dy * scale + rng.normal(0, 0.003 * dist)
        da += yaw_bias * dist + rng.normal(0, math.radians(0.02))
        ex, ey, ea = out[k - 1]
        c, s = math.cos(ea), math.sin(ea)
        out[k] = (ex + c * dx - s * dy, ey + s * dx + c * dy, ea + da)
    return out

