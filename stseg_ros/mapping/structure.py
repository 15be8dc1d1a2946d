"""The map's static structure: what each revisit is registered to.

Every registered revisit adds its points of no object (walls, floors, fixed
furniture, unsegmented clutter), counted once per cell, and the floor
columns it looked at (any of its points). A cell belongs to the structure
while enough of the revisits that looked at its column put a point in it:
two where two or more looked, and at least ``agree`` of them over a long
history. Walls and floors that every revisit sees stay; clutter that stood
there once, and the outer layers by which depth noise and registration error
thicken a surface revisit after revisit, fall out; a place that only one
revisit looked at keeps that revisit's cells, so a first revisit that saw
half the room still gives the other half a reference later. The tallies
grow with the area seen (bounded by the room); the structure handed to
registration stops growing with the revisits.
"""

from __future__ import annotations

import numpy as np

from stseg_ros.core.pointcloud import voxel_downsample, voxel_keys


class CellTally:
    """One point per occupied ``voxel`` cell (the first put there) and how many
    ``add`` calls put a point in it; keys sorted, for lookups."""

    def __init__(self, voxel: float) -> None:
        self.voxel = voxel
        self.keys = np.zeros(0, np.int64)
        self.points = np.zeros((0, 3), np.float32)
        self.counts = np.zeros(0, np.int32)

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, xyz: np.ndarray) -> None:
        """Count each cell ``xyz`` occupies once."""
        xyz = np.asarray(xyz, np.float32)[voxel_downsample(xyz, self.voxel)]
        keys = voxel_keys(xyz, self.voxel)
        where = self._find(keys)
        self.counts[where[where >= 0]] += 1
        new = where < 0
        keys = np.concatenate([self.keys, keys[new]])
        order = np.argsort(keys, kind="stable")
        self.keys = keys[order]
        self.points = np.concatenate([self.points, xyz[new]])[order]
        self.counts = np.concatenate([self.counts, np.ones(int(new.sum()), np.int32)])[order]

    def count(self, xyz: np.ndarray) -> np.ndarray:
        """How many ``add`` calls occupied the cell of each point (0: none)."""
        where = self._find(voxel_keys(xyz, self.voxel))
        return np.where(where >= 0, self.counts[np.maximum(where, 0)], 0)

    def _find(self, keys: np.ndarray) -> np.ndarray:
        """Index of each key's cell, -1 where it has none."""
        pos = np.searchsorted(self.keys, keys)
        pos = np.minimum(pos, max(len(self.keys) - 1, 0))
        found = (self.keys[pos] == keys) if len(self.keys) else np.zeros(len(keys), bool)
        return np.where(found, pos, -1)


class StaticStructure:
    """The structure of the registered revisits, as ``points()`` gives it to
    registration (see the module's account); ``agree`` 0 gives every cell any
    revisit saw."""

    def __init__(self, voxel: float, column: float = 0.25, agree: float = 0.3) -> None:
        self.cells = CellTally(voxel)
        self.columns = CellTally(column)       # floor cells (z = 0) a revisit looked at
        self.agree = agree

    def add(self, structure_xyz: np.ndarray, seen_xyz: np.ndarray) -> None:
        """One registered revisit: its points of no object, and all its points."""
        self.cells.add(structure_xyz)
        self.columns.add(_flat(seen_xyz))

    def points(self) -> np.ndarray:
        """The cells enough of the revisits that looked there agree on."""
        if self.agree <= 0:
            return self.cells.points
        looked = self.columns.count(_flat(self.cells.points))
        need = np.where(looked <= 1, 1,
                        np.maximum(2, np.ceil(self.agree * looked - 1e-9))).astype(np.int32)
        return self.cells.points[self.cells.counts >= need]

    def __len__(self) -> int:
        return len(self.cells)


def _flat(xyz: np.ndarray) -> np.ndarray:
    """Points dropped onto the floor plane (their column)."""
    flat = np.array(xyz, np.float32, copy=True).reshape(-1, 3)
    flat[:, 2] = 0.0
    return flat

