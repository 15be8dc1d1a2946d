"""Procedural rooms and their evolution over revisits.

A room is a floor polygon (rectangular or L-shaped, 3-9 m, 2.4-3.2 m high)
with walls, a door and a window, furnished with objects from parametric
families (``furniture.py``). Between revisits objects are moved, removed,
added, identical copies swapped, chairs nudged and the door angle changed;
most objects stay put, as in real homes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from stseg_ros.benchmark.furniture import AGAINST_WALL, FAMILIES, Part, Style
from stseg_ros.core.pointcloud import planar_pose
from stseg_ros.core.records import yaw_difference

ROOM_KINDS = {
    # class -> (min, max) count; identical=True builds all copies from one style
    "living room": [("sofa", 1, 1), ("table", 1, 1), ("chair", 2, 4), ("television", 0, 1),
                    ("lamp", 1, 2), ("bookshelf", 0, 2), ("otherprop", 1, 2), ("box", 0, 2),
                    ("cabinet", 0, 1)],
    "bedroom": [("bed", 1, 1), ("night stand", 1, 2), ("dresser", 0, 1), ("lamp", 1, 2),
                ("chair", 0, 2), ("box", 1, 3), ("pillow", 1, 2), ("otherprop", 0, 1)],
    "office": [("desk", 1, 3), ("chair", 2, 4), ("cabinet", 1, 2), ("bookshelf", 0, 2),
               ("box", 1, 3), ("otherprop", 0, 2), ("lamp", 0, 1)],
}
IDENTICAL = {"chair", "night stand", "desk", "box", "lamp"}
MOVABLE = {"chair", "table", "lamp", "box", "pillow", "otherprop", "desk", "night stand",
           "television", "sofa", "cabinet", "dresser", "bookshelf"}
ADDABLE = ["box", "chair", "otherprop", "lamp", "pillow"]


@dataclass(frozen=True)
class Placed:
    """An object instance in one epoch: its style placed at (x, y, yaw) on the floor."""

    id: int
    style: int          # index into Scenario.styles
    x: float
    y: float
    yaw: float

    def corners(self, styles: list[Style], margin: float = 0.0) -> np.ndarray:
        lo, hi = styles[self.style].bounds()
        xs = (lo[0] - margin, hi[0] + margin)
        ys = (lo[1] - margin, hi[1] + margin)
        local = np.array([(xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]), (xs[0], ys[1])])
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        return local @ np.array([[c, s], [-s, c]]) + (self.x, self.y)


@dataclass(frozen=True)
class Room:
    polygon: np.ndarray            # (N, 2) floor outline, counter-clockwise (m)
    height: float
    wall_color: tuple[float, float, float]
    floor_color: tuple[float, float, float]
    door_wall: int                 # polygon edge index holding the door
    door_offset: float             # hinge distance from the edge start (m)
    window_wall: int
    window_offset: float
    window_width: float

    def wall(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Start and end of outline edge ``i`` (the room's inside is to its left)."""
        return self.polygon[i], self.polygon[(i + 1) % len(self.polygon)]


@dataclass(frozen=True)
class TrueChange:
    """A ground-truth change between the previous epoch and ``epoch``."""

    kind: str                      # added | removed | moved
    object_id: int
    class_id: int
    epoch: int
    previous: tuple[float, float, float] | None = None  # x, y, yaw
    current: tuple[float, float, float] | None = None
    ambiguous: bool = False        # a swap inside a group of identical objects


@dataclass
class Epoch:
    """The scene as it is during one revisit."""

    index: int
    objects: list[Placed]
    door_angle: float              # radians, 0 = closed
    exposure: float                # camera gain of this revisit
    light: tuple[float, float, float]
    coverage: float                # fraction of the room the trajectory reaches
    changes: list[TrueChange] = field(default_factory=list)


@dataclass
class Scenario:
    room: Room
    kind: str
    styles: list[Style]
    epochs: list[Epoch]
    door_id: int
    window_id: int

    def groups(self) -> dict[int, list[int]]:
        """Identical groups: style index -> ids of objects built from it (2 or more)."""
        members: dict[int, set[int]] = {}
        for ep in self.epochs:
            for o in ep.objects:
                members.setdefault(o.style, set()).add(o.id)
        return {s: sorted(ids) for s, ids in members.items() if len(ids) > 1}


# --- geometry helpers ---------------------------------------------------------

def inside_polygon(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Whether each of (N, 2) points lies inside a polygon (even-odd rule)."""
    x, y = points[:, 0], points[:, 1]
    inside = np.zeros(len(points), dtype=bool)
    for (x0, y0), (x1, y1) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        crosses = (y0 > y) != (y1 > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xc = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
        inside ^= crosses & (x < xc)
    return inside


def _overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Separating-axis test of two convex quads (4, 2)."""
    for quad in (a, b):
        for i in range(4):
            edge = quad[(i + 1) % 4] - quad[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() <= pb.min() or pb.max() <= pa.min():
                return False
    return True


def fits(obj: Placed, others: list[Placed], room: Room, styles: list[Style]) -> bool:
    """Inside the room and free of collisions (5 cm clearance), door swing kept clear."""
    quad = obj.corners(styles)
    if not inside_polygon(obj.corners(styles, 0.02), room.polygon).all():
        return False
    p0, p1 = room.wall(room.door_wall)
    hinge = p0 + (p1 - p0) / np.linalg.norm(p1 - p0) * room.door_offset
    if np.linalg.norm(quad.mean(0) - hinge) < 1.2:
        return False
    grown = obj.corners(styles, 0.025)  # both grown by half the clearance: symmetric
    return not any(_overlap(grown, o.corners(styles, 0.025)) for o in others if o.id != obj.id)


WALL_PAINTS = [(0.88, 0.86, 0.8), (0.8, 0.84, 0.86), (0.9, 0.85, 0.72), (0.75, 0.8, 0.72)]
FLOORS = [(0.55, 0.4, 0.26), (0.42, 0.3, 0.2), (0.6, 0.58, 0.55), (0.35, 0.33, 0.32)]


def _tint(rng: np.random.Generator, palette) -> tuple[float, float, float]:
    """A palette colour with one small brightness change (not per channel)."""
    base = np.array(palette[rng.integers(len(palette))])
    return tuple(np.clip(base * rng.uniform(0.92, 1.05), 0, 1).round(3))


def make_room(rng: np.random.Generator) -> Room:
    w, d = rng.uniform(3.0, 9.0), rng.uniform(3.0, 9.0)
    if rng.random() < 0.4 and min(w, d) > 4.0:  # L-shape: cut the top-right corner
        cw, cd = w * rng.uniform(0.3, 0.5), d * rng.uniform(0.3, 0.5)
        poly = [(0, 0), (w, 0), (w, d - cd), (w - cw, d - cd), (w - cw, d), (0, d)]
    else:
        poly = [(0, 0), (w, 0), (w, d), (0, d)]
    poly = np.array(poly, dtype=float)
    lengths = np.linalg.norm(np.roll(poly, -1, axis=0) - poly, axis=1)
    long_walls = [i for i, n in enumerate(lengths) if n > 2.2]
    door_wall, window_wall = rng.choice(long_walls, 2, replace=len(long_walls) < 2)
    ww = float(min(rng.uniform(0.8, 1.8), lengths[window_wall] - 1.0))
    return Room(
        polygon=poly, height=float(rng.uniform(2.4, 3.2)),
        wall_color=_tint(rng, WALL_PAINTS), floor_color=_tint(rng, FLOORS),
        door_wall=int(door_wall), door_offset=float(rng.uniform(0.3, lengths[door_wall] - 1.2)),
        window_wall=int(window_wall),
        window_offset=float(rng.uniform(0.3, lengths[window_wall] - ww - 0.2)),
        window_width=ww)


def _random_pose(rng, room: Room, style: Style) -> tuple[float, float, float]:
    poly = room.polygon
    if style.class_name in AGAINST_WALL:
        p0, p1 = room.wall(int(rng.integers(len(poly))))
        edge = p1 - p0
        length = float(np.linalg.norm(edge))
        t = rng.uniform(0.0, 1.0) * length
        inward = np.array([-edge[1], edge[0]]) / length  # CCW polygon: left is inside
        depth = -style.bounds()[0][0]
        pos = p0 + edge / length * t + inward * (depth + 0.03)
        return float(pos[0]), float(pos[1]), math.atan2(inward[1], inward[0])
    lo, hi = poly.min(0), poly.max(0)
    x, y = rng.uniform(lo + 0.3, hi - 0.3)
    return float(x), float(y), float(rng.uniform(-math.pi, math.pi))


def _place(rng, room, styles, style_index, others, object_id, tries=200) -> Placed | None:
    for _ in range(tries):
        obj = Placed(object_id, style_index, *_random_pose(rng, room, styles[style_index]))
        if fits(obj, others, room, styles):
            return obj
    return None


def make_scenario(rng: np.random.Generator, revisits: int) -> Scenario:
    """A furnished room and its history over ``revisits`` epochs."""
    room = make_room(rng)
    kind = str(rng.choice(list(ROOM_KINDS)))
    styles: list[Style] = []
    objects: list[Placed] = []
    next_id = 1
    door_id, window_id = next_id, next_id + 1
    next_id += 2
    for cls, lo, hi in ROOM_KINDS[kind]:
        count = int(rng.integers(lo, hi + 1))
        shared = cls in IDENTICAL and count > 1
        for k in range(count):
            if k == 0 or not shared:
                styles.append(FAMILIES[cls](rng))
            placed = _place(rng, room, styles, len(styles) - 1, objects, next_id)
            if placed is not None:
                objects.append(placed)
                next_id += 1
    first = Epoch(0, objects, door_angle=float(rng.uniform(0.2, 1.5)), exposure=1.0,
                  light=_light(rng), coverage=1.0,
                  changes=[TrueChange("added", o.id, styles[o.style].class_id, 0, None,
                                      (o.x, o.y, o.yaw)) for o in objects])
    scenario = Scenario(room, kind, styles, [first], door_id, window_id)
    for t in range(1, revisits):
        next_id = _evolve(rng, scenario, t, next_id)
    return scenario


def _light(rng) -> tuple[float, float, float]:
    v = np.array([rng.normal(), rng.normal(), -abs(rng.normal()) - 1.0])
    return tuple((v / np.linalg.norm(v)).round(4))


def _evolve(rng, scenario: Scenario, t: int, next_id: int) -> int:
    """Derive epoch t from epoch t-1; returns the next free object id."""
    room, styles = scenario.room, scenario.styles
    prev = scenario.epochs[-1]
    current = list(prev.objects)
    changes: list[TrueChange] = []
    cls = {o.id: styles[o.style].class_name for o in current}

    def cid(o: Placed) -> int:
        return styles[o.style].class_id

    # removals (about 6 %)
    for o in list(current):
        if rng.random() < 0.06:
            current.remove(o)
            changes.append(TrueChange("removed", o.id, cid(o), t, (o.x, o.y, o.yaw), None))
    # moves (about 12 %, mostly small furniture) and chair nudges
    for i, o in enumerate(list(current)):
        name = cls[o.id]
        heavy = name in AGAINST_WALL or name in ("sofa", "bed")
        if name in MOVABLE and rng.random() < (0.05 if heavy else 0.15):
            others = [c for c in current if c.id != o.id]
            moved = _place(rng, room, styles, o.style, others, o.id, tries=100)
            if moved is not None:
                current[current.index(o)] = moved
        elif name == "chair" and rng.random() < 0.25:  # pulled out a little and turned
            r = rng.uniform(0.08, 0.25)
            a = o.yaw + math.pi
            nudged = replace(o, x=o.x + r * math.cos(a), y=o.y + r * math.sin(a),
                             yaw=o.yaw + rng.uniform(-0.35, 0.35))
            if fits(nudged, [c for c in current if c.id != o.id], room, styles):
                current[i] = nudged
    # a swap inside a group of identical objects
    swapped: set[int] = set()
    by_style: dict[int, list[int]] = {}
    for k, o in enumerate(current):
        by_style.setdefault(o.style, []).append(k)
    groups = [ks for ks in by_style.values() if len(ks) > 1]
    if groups and rng.random() < 0.5:
        a, b = rng.choice(groups[int(rng.integers(len(groups)))], 2, replace=False)
        oa, ob = current[a], current[b]
        current[a] = replace(oa, x=ob.x, y=ob.y, yaw=ob.yaw)
        current[b] = replace(ob, x=oa.x, y=oa.y, yaw=oa.yaw)
        swapped = {oa.id, ob.id}
    # additions (0-2 new objects)
    for _ in range(int(rng.integers(0, 3))):
        styles.append(FAMILIES[str(rng.choice(ADDABLE))](rng))
        placed = _place(rng, room, styles, len(styles) - 1, current, next_id)
        if placed is not None:
            current.append(placed)
            changes.append(TrueChange("added", placed.id, cid(placed), t, None,
                                      (placed.x, placed.y, placed.yaw)))
            next_id += 1
        else:
            styles.pop()
    before = {o.id: o for o in prev.objects}
    for o in current:
        p = before.get(o.id)
        if p is None:
            continue
        if is_moved((p.x, p.y, p.yaw), (o.x, o.y, o.yaw)):
            changes.append(TrueChange("moved", o.id, cid(o), t, (p.x, p.y, p.yaw),
                                      (o.x, o.y, o.yaw), ambiguous=o.id in swapped))
    coverage = 1.0 if rng.random() < 0.7 else float(rng.uniform(0.45, 0.75))
    scenario.epochs.append(Epoch(
        t, sorted(current, key=lambda o: o.id), door_angle=float(rng.uniform(0.0, 1.6)),
        exposure=float(rng.uniform(0.65, 1.35)), light=_light(rng), coverage=coverage,
        changes=changes))
    return next_id


MOVE_DISTANCE = 0.2              # m; a change above this is "moved"
MOVE_ANGLE = math.radians(15.0)  # rad; a yaw change above this is "moved"


def is_moved(a: tuple[float, float, float], b: tuple[float, float, float]) -> bool:
    """The benchmark's definition of a move between two (x, y, yaw) poses."""
    d = math.hypot(b[0] - a[0], b[1] - a[1])
    return d > MOVE_DISTANCE or yaw_difference(a[2], b[2]) > MOVE_ANGLE


def fixture_parts(room: Room, door_angle: float) -> dict[str, list[tuple[np.ndarray, Part]]]:
    """World-frame boxes of the door and window: (4x4 pose, part) pairs."""
    out: dict[str, list[tuple[np.ndarray, Part]]] = {}
    for name, wall, offset, width in (("door", room.door_wall, room.door_offset, 0.9),
                                      ("window", room.window_wall, room.window_offset,
                                       room.window_width)):
        p0, p1 = room.wall(wall)
        edge = (p1 - p0) / np.linalg.norm(p1 - p0)
        yaw = math.atan2(edge[1], edge[0])
        hinge = p0 + edge * offset
        if name == "door":
            a = yaw + door_angle
            centre = hinge + np.array([math.cos(a), math.sin(a)]) * 0.45
            normal = np.array([-math.sin(a), math.cos(a)]) * 0.03
            pose = planar_pose(*(centre + normal), a, 1.0)
            part = Part((0, 0, 0), (0.9, 0.04, 2.0), (0.6, 0.45, 0.3))
        else:
            centre = hinge + edge * width / 2 + np.array([-edge[1], edge[0]]) * 0.02
            pose = planar_pose(*centre, yaw, 1.5)
            part = Part((0, 0, 0), (width, 0.03, 1.1), (0.55, 0.7, 0.85))
        out[name] = [(pose, part)]
    return out


def object_pose(obj: Placed) -> np.ndarray:
    """4x4 world pose of an object's frame."""
    return planar_pose(obj.x, obj.y, obj.yaw)
