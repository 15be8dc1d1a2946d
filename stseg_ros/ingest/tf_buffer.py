"""A small transform buffer: the part of tf2 the accumulator needs.

Transforms arrive as (parent, child, stamp, translation, quaternion), dynamic
ones from ``/tf`` (or from odometry) and static ones from ``/tf_static``.
``lookup(target, source, stamp)`` composes the chain between two frames of
the tree, interpolating each dynamic edge at the stamp (linear translation,
spherical quaternion interpolation), as tf2's ``lookupTransform`` does.
Thread-safe: messages are added on the executor's thread and looked up on
the fusion worker.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np

from stseg_ros.core.pointcloud import rigid_transform


def _slerp(q0: np.ndarray, q1: np.ndarray, a: float) -> np.ndarray:
    dot = float(np.dot(q0, q1))
    if dot < 0.0:                       # the shorter way round
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + a * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - a) * theta) * q0 + np.sin(a * theta) * q1) / np.sin(theta)


@dataclass
class _Edge:
    parent: str
    stamps: list[int] = field(default_factory=list)
    values: list[np.ndarray] = field(default_factory=list)   # (7,): x y z qx qy qz qw


class TfBuffer:
    """Dynamic transforms kept for ``cache_s`` seconds, static ones for ever.

    A stamp more than ``jump_back_s`` older than the newest one means time
    jumped back (a bag replayed in a loop, a restarted simulation): the
    dynamic history is dropped, as tf2 does on a /clock jump.
    """

    def __init__(self, cache_s: float = 10.0, jump_back_s: float = 1.0) -> None:
        self.cache_ns = int(cache_s * 1e9)
        self.jump_back_ns = int(jump_back_s * 1e9)
        self._dynamic: dict[str, _Edge] = {}
        self._static: dict[str, tuple[str, np.ndarray]] = {}
        self._newest = 0
        self._lock = threading.Lock()
        self.resets = 0

    def add(self, parent: str, child: str, stamp_ns: int, translation, quaternion,
            static: bool = False) -> None:
        parent, child = parent.lstrip("/"), child.lstrip("/")
        if not parent or not child or parent == child:
            raise ValueError(f"transform {parent!r} -> {child!r} is not an edge of a tree")
        value = np.array([*translation, *quaternion], dtype=float)
        if not np.isfinite(value).all() or np.linalg.norm(value[3:]) < 1e-6:
            raise ValueError(f"transform {parent!r} -> {child!r} is not finite or has a "
                             "zero quaternion")
        value[3:] /= np.linalg.norm(value[3:])
        with self._lock:
            if static:
                self._static[child] = (parent, rigid_transform(value[:3], value[3:]))
                return
            if stamp_ns < self._newest - self.jump_back_ns:
                self._dynamic.clear()
                self._newest = 0
                self.resets += 1
            self._newest = max(self._newest, stamp_ns)
            edge = self._dynamic.setdefault(child, _Edge(parent))
            edge.parent = parent
            k = bisect.bisect_left(edge.stamps, stamp_ns)
            if k < len(edge.stamps) and edge.stamps[k] == stamp_ns:
                edge.values[k] = value
            else:
                edge.stamps.insert(k, stamp_ns)
                edge.values.insert(k, value)
            drop = bisect.bisect_left(edge.stamps, self._newest - self.cache_ns)
            if drop:
                del edge.stamps[:drop], edge.values[:drop]

    @property
    def newest_ns(self) -> int:
        """Stamp of the newest dynamic transform received (0 if none)."""
        with self._lock:
            return self._newest

    def _edge_at(self, child: str, stamp_ns: int, tolerance_ns: int
                 ) -> tuple[str, np.ndarray] | None:
        """(parent, parent_from_child) at the stamp, or None if not known there."""
        if child in self._static:
            return self._static[child]
        edge = self._dynamic.get(child)
        if edge is None or not edge.stamps:
            return None
        k = bisect.bisect_left(edge.stamps, stamp_ns)
        if k < len(edge.stamps) and edge.stamps[k] == stamp_ns:
            value = edge.values[k]
        elif 0 < k < len(edge.stamps):
            t0, t1 = edge.stamps[k - 1], edge.stamps[k]
            a = (stamp_ns - t0) / (t1 - t0)
            v0, v1 = edge.values[k - 1], edge.values[k]
            value = np.concatenate([v0[:3] + a * (v1[:3] - v0[:3]), _slerp(v0[3:], v1[3:], a)])
        else:                        # before the first or after the last sample
            near = edge.stamps[0] if k == 0 else edge.stamps[-1]
            if abs(near - stamp_ns) > tolerance_ns:
                return None
            value = edge.values[0] if k == 0 else edge.values[-1]
        return edge.parent, rigid_transform(value[:3], value[3:])

    def _chain(self, frame: str, stamp_ns: int, tolerance_ns: int
               ) -> dict[str, np.ndarray] | None:
        """For ``frame`` and each ancestor: ancestor_from_frame at the stamp."""
        out, pose, seen = {frame: np.eye(4)}, np.eye(4), {frame}
        while True:
            step = self._edge_at(frame, stamp_ns, tolerance_ns)
            if step is None:
                return out
            frame, parent_from_child = step
            if frame in seen:
                return None                       # a loop: not a tree
            seen.add(frame)
            pose = parent_from_child @ pose
            out[frame] = pose

    def root(self, frame: str) -> str:
        """The top of ``frame``'s branch of the tree (``map``, ``odom``, ``world``...)."""
        frame, seen = frame.lstrip("/"), set()
        with self._lock:
            while frame not in seen:
                seen.add(frame)
                parent = self._static.get(frame, (None,))[0] or getattr(
                    self._dynamic.get(frame), "parent", None)
                if parent is None:
                    break
                frame = parent
        return frame

    def lookup(self, target: str, source: str, stamp_ns: int,
               tolerance_ns: int = 0) -> np.ndarray | None:
        """target_from_source (4x4) at the stamp, or None if the buffer cannot say.

        ``tolerance_ns`` allows holding the first or last sample of an edge
        that far outside its known interval.
        """
        target, source = target.lstrip("/"), source.lstrip("/")
        with self._lock:
            up_source = self._chain(source, stamp_ns, tolerance_ns)
            up_target = self._chain(target, stamp_ns, tolerance_ns)
        if up_source is None or up_target is None:
            return None
        common = next((f for f in up_source if f in up_target), None)
        if common is None:
            return None
        return np.linalg.inv(up_target[common]) @ up_source[common]
