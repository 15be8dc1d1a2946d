"""Parametric furniture families: each NYU40 class is a family of box-built
shapes (proportions, legs, backs, sizes) with a colour palette.

A *style* fixes every parameter of one family member, so objects built from the
same style are identical copies (for example four identical chairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stseg_ros.core.classes import class_id


@dataclass(frozen=True)
class Part:
    """An axis-aligned box in the object's frame (origin on the floor, +x forward)."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    color: tuple[float, float, float]


@dataclass(frozen=True)
class Style:
    """One fully specified family member: same style, identical objects."""

    class_name: str
    parts: tuple[Part, ...]
    texture: str  # "wood", "fabric", "plain", "screen", "leaf"

    @property
    def class_id(self) -> int:
        return class_id(self.class_name)

    @property
    def height(self) -> float:
        return float(self.bounds()[1][2])

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        c = np.array([p.center for p in self.parts])
        s = np.array([p.size for p in self.parts]) / 2
        return (c - s).min(0), (c + s).max(0)


WOODS = [(0.55, 0.38, 0.22), (0.72, 0.56, 0.38), (0.35, 0.23, 0.14), (0.85, 0.78, 0.65),
         (0.25, 0.22, 0.2)]
FABRICS = [(0.55, 0.1, 0.12), (0.15, 0.3, 0.55), (0.5, 0.5, 0.52), (0.2, 0.45, 0.3),
           (0.8, 0.7, 0.5), (0.12, 0.12, 0.14), (0.85, 0.45, 0.2)]
PAINTS = [(0.92, 0.92, 0.9), (0.2, 0.2, 0.22), (0.65, 0.7, 0.75), (0.9, 0.85, 0.7)]
METALS = [(0.7, 0.7, 0.72), (0.1, 0.1, 0.1), (0.8, 0.65, 0.3)]


def _pick(rng: np.random.Generator, palette):
    base = np.array(palette[rng.integers(len(palette))])
    return tuple(np.clip(base + rng.normal(0, 0.03, 3), 0.02, 0.98).round(3))


def _legs(w: float, d: float, h: float, t: float, color) -> list[Part]:
    return [Part((sx * (w / 2 - t / 2), sy * (d / 2 - t / 2), h / 2), (t, t, h), color)
            for sx in (-1, 1) for sy in (-1, 1)]


def chair(rng):
    w, d = rng.uniform(0.4, 0.52), rng.uniform(0.4, 0.5)
    seat_h, back_h = rng.uniform(0.42, 0.48), rng.uniform(0.35, 0.5)
    frame, seat = _pick(rng, WOODS + METALS), _pick(rng, FABRICS + WOODS)
    t = rng.uniform(0.03, 0.05)
    parts = _legs(d, w, seat_h - 0.04, t, frame)
    parts.append(Part((0, 0, seat_h - 0.02), (d, w, 0.05), seat))
    parts.append(Part((-d / 2 + 0.025, 0, seat_h + back_h / 2), (0.04, w, back_h), seat))
    return Style("chair", tuple(parts), "fabric")


def table(rng):
    length, width, h = rng.uniform(0.8, 1.8), rng.uniform(0.6, 1.0), rng.uniform(0.72, 0.77)
    wood = _pick(rng, WOODS)
    parts = _legs(length, width, h - 0.04, rng.uniform(0.04, 0.07), wood)
    parts.append(Part((0, 0, h - 0.02), (length, width, 0.04), wood))
    return Style("table", tuple(parts), "wood")


def desk(rng):
    length, width, h = rng.uniform(1.0, 1.6), rng.uniform(0.55, 0.75), rng.uniform(0.72, 0.76)
    wood, paint = _pick(rng, WOODS), _pick(rng, PAINTS)
    parts = [Part((0, 0, h - 0.02), (width, length, 0.04), wood),
             Part((0, -length / 2 + 0.02, (h - 0.04) / 2), (width, 0.04, h - 0.04), paint),
             Part((0, length / 2 - 0.2, (h - 0.04) / 2), (width, 0.4, h - 0.04), paint)]
    return Style("desk", tuple(parts), "wood")


def sofa(rng):
    length, depth = rng.uniform(1.5, 2.3), rng.uniform(0.8, 0.95)
    fabric, arm = _pick(rng, FABRICS), rng.uniform(0.12, 0.22)
    parts = [Part((0, 0, 0.22), (depth, length, 0.44), fabric),
             Part((-depth / 2 + 0.1, 0, 0.6), (0.2, length, 0.4), fabric),
             Part((0, -length / 2 + arm / 2, 0.55), (depth, arm, 0.25), fabric),
             Part((0, length / 2 - arm / 2, 0.55), (depth, arm, 0.25), fabric)]
    return Style("sofa", tuple(parts), "fabric")


def bed(rng):
    length, width = rng.uniform(1.9, 2.1), rng.choice([0.9, 1.4, 1.6, 1.8])
    wood, sheet = _pick(rng, WOODS), _pick(rng, PAINTS[:1] + FABRICS)
    parts = [Part((0, 0, 0.2), (length, width, 0.4), wood),
             Part((0.02, 0, 0.5), (length - 0.04, width - 0.04, 0.2), sheet),
             Part((-length / 2 + 0.03, 0, 0.55), (0.06, width, 1.1), wood)]
    return Style("bed", tuple(parts), "fabric")


def cabinet(rng):
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.4, 0.6), rng.uniform(0.8, 1.9)
    paint, metal = _pick(rng, PAINTS + WOODS), _pick(rng, METALS)
    parts = [Part((0, 0, h / 2), (d, w, h), paint),
             Part((d / 2 + 0.01, -0.05, h * 0.55), (0.02, 0.02, 0.15), metal),
             Part((d / 2 + 0.01, 0.05, h * 0.55), (0.02, 0.02, 0.15), metal)]
    return Style("cabinet", tuple(parts), "plain")


def bookshelf(rng):
    w, d, h = rng.uniform(0.6, 1.2), rng.uniform(0.28, 0.4), rng.uniform(1.2, 2.0)
    wood, n = _pick(rng, WOODS + PAINTS), int(rng.integers(3, 6))
    parts = [Part((0, -w / 2 + 0.01, h / 2), (d, 0.02, h), wood),
             Part((0, w / 2 - 0.01, h / 2), (d, 0.02, h), wood),
             Part((-d / 2 + 0.01, 0, h / 2), (0.02, w, h), wood)]
    parts += [Part((0, 0, i * (h - 0.02) / n + 0.01), (d, w, 0.02), wood) for i in range(n + 1)]
    for i in range(n):  # rows of books
        z0 = i * (h - 0.02) / n + 0.02
        bh = min(0.22, (h - 0.02) / n - 0.04)
        parts.append(Part((0, 0, z0 + bh / 2), (d * 0.8, w * 0.8, bh), _pick(rng, FABRICS)))
    return Style("bookshelf", tuple(parts), "wood")


def lamp(rng):
    h, shade = rng.uniform(1.3, 1.7), rng.uniform(0.3, 0.45)
    metal, cloth = _pick(rng, METALS), _pick(rng, PAINTS + FABRICS)
    parts = [Part((0, 0, 0.015), (0.3, 0.3, 0.03), metal),
             Part((0, 0, h / 2), (0.03, 0.03, h), metal),
             Part((0, 0, h - 0.12), (shade, shade, 0.25), cloth)]
    return Style("lamp", tuple(parts), "plain")


def television(rng):
    w = rng.uniform(0.8, 1.4)
    black = (0.05, 0.05, 0.06)
    parts = [Part((0, 0, 0.025), (0.25, 0.4, 0.05), black),
             Part((0, 0, 0.2), (0.05, 0.08, 0.35), black),
             Part((0, 0, 0.35 + w * 0.28), (0.06, w, w * 0.56), black)]
    return Style("television", tuple(parts), "screen")


def box(rng):
    s = rng.uniform(0.25, 0.6, 3) * np.array([1.0, 1.0, 0.8])
    brown = _pick(rng, [(0.62, 0.46, 0.28), (0.7, 0.55, 0.35), (0.85, 0.85, 0.8)])
    return Style("box", (Part((0, 0, s[2] / 2), tuple(s.round(3)), brown),), "plain")


def pillow(rng):
    s = (rng.uniform(0.35, 0.5), rng.uniform(0.35, 0.55), rng.uniform(0.1, 0.16))
    return Style("pillow", (Part((0, 0, s[2] / 2), s, _pick(rng, FABRICS)),), "fabric")


def plant(rng):
    pot, h = rng.uniform(0.2, 0.35), rng.uniform(0.6, 1.4)
    clay = _pick(rng, [(0.65, 0.35, 0.2), (0.9, 0.9, 0.88), (0.2, 0.2, 0.2)])
    green = _pick(rng, [(0.15, 0.45, 0.15), (0.25, 0.55, 0.2), (0.1, 0.35, 0.2)])
    parts = [Part((0, 0, 0.15), (pot, pot, 0.3), clay),
             Part((0, 0, 0.3 + h * 0.35), (pot * 1.8, pot * 1.6, h * 0.5), green),
             Part((0, 0, 0.3 + h * 0.75), (pot * 1.2, pot * 1.3, h * 0.4), green)]
    return Style("otherprop", tuple(parts), "leaf")


def night_stand(rng):
    s = rng.uniform(0.4, 0.55)
    paint, metal = _pick(rng, WOODS + PAINTS), _pick(rng, METALS)
    parts = [Part((0, 0, 0.28), (s, s, 0.56), paint),
             Part((s / 2 + 0.01, 0, 0.4), (0.02, 0.12, 0.02), metal)]
    return Style("night stand", tuple(parts), "wood")


def dresser(rng):
    w, h = rng.uniform(0.9, 1.5), rng.uniform(0.75, 1.1)
    paint, metal = _pick(rng, WOODS + PAINTS), _pick(rng, METALS)
    parts = [Part((0, 0, h / 2), (0.5, w, h), paint)]
    parts += [Part((0.26, 0, h * (i + 0.5) / 3), (0.02, 0.2, 0.02), metal) for i in range(3)]
    return Style("dresser", tuple(parts), "wood")


# Family builders by class; `against_wall` families are placed with their back
# (-x side) to a wall.
FAMILIES = {
    "chair": chair, "table": table, "desk": desk, "sofa": sofa, "bed": bed,
    "cabinet": cabinet, "bookshelf": bookshelf, "lamp": lamp, "television": television,
    "box": box, "pillow": pillow, "otherprop": plant, "night stand": night_stand,
    "dresser": dresser,
}
AGAINST_WALL = {"sofa", "bed", "cabinet", "bookshelf", "television", "dresser", "desk",
                "night stand"}
