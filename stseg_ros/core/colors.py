"""Stable colours per persistent identity, shared by RViz markers and pictures."""

from __future__ import annotations

import colorsys

_GOLDEN_RATIO = 0.618033988749895


def identity_color(object_id: int) -> tuple[float, float, float]:
    """RGB in [0, 1] for an id: the same id always gets the same colour, and
    consecutive ids get well separated hues (golden-ratio hue steps)."""
    hue = (int(object_id) * _GOLDEN_RATIO) % 1.0
    saturation = 0.65 + 0.3 * ((int(object_id) * 7) % 3) / 2.0
    return colorsys.hsv_to_rgb(hue, min(saturation, 0.95), 0.95)
