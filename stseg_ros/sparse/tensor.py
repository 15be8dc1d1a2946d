"""Sparse 4D voxel tensors: active voxels (batch, t, x, y, z) with features.

Epochs are kept apart by the ``t`` coordinate: spatial convolutions only
connect voxels of the same batch item and epoch; exchanging features across
epochs is a separate, explicit operation. Coordinates are packed into one
sortable int64 key (7 bits batch, 8 bits epoch, 16 bits per axis), so
neighbour lookups are a sort plus ``torch.searchsorted``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

AXIS_BITS = 16
AXIS_OFFSET = 1 << (AXIS_BITS - 1)         # x, y, z in [-32767, 32766] (with a margin of 1)
MAX_EPOCHS = 1 << 8
MAX_BATCH = 1 << 7


def encode(coords: torch.Tensor) -> torch.Tensor:
    """(N, 5) integer coordinates (batch, t, x, y, z) -> (N,) int64 keys that
    sort by batch, epoch, x, y, z."""
    c = coords.long()
    if len(c) and (c[:, 0].min() < 0 or c[:, 0].max() >= MAX_BATCH
                   or c[:, 1].min() < 0 or c[:, 1].max() >= MAX_EPOCHS
                   or c[:, 2:].abs().max() >= AXIS_OFFSET - 1):
        raise ValueError("voxel coordinates out of range: batch < 128, epoch < 256, "
                         f"|x|, |y|, |z| < {AXIS_OFFSET - 1}")
    xyz = c[:, 2:] + AXIS_OFFSET
    key = (c[:, 0] << 8) | c[:, 1]
    for axis in range(3):
        key = (key << AXIS_BITS) | xyz[:, axis]
    return key


def offset_key(delta: tuple[int, int, int]) -> int:
    """What adding a spatial offset (dx, dy, dz) adds to a key."""
    dx, dy, dz = delta
    return (dx << (2 * AXIS_BITS)) + (dy << AXIS_BITS) + dz


class KeyIndex:
    """Sorted keys of a voxel set, for finding voxels by key."""

    def __init__(self, keys: torch.Tensor) -> None:
        self.sorted, self.order = torch.sort(keys)

    def find(self, query: torch.Tensor) -> torch.Tensor:
        """Row of each queried key, -1 where the voxel is not in the set."""
        if len(self.sorted) == 0:
            return torch.full_like(query, -1)
        pos = torch.searchsorted(self.sorted, query).clamp_(max=len(self.sorted) - 1)
        return torch.where(self.sorted[pos] == query, self.order[pos], -1)


@dataclass(eq=False)
class SparseTensor:
    """Features on active voxels. ``coords`` are on this tensor's own grid
    (``stride`` times coarser than the input voxels)."""

    coords: torch.Tensor               # (N, 5) int64: batch, t, x, y, z
    feats: torch.Tensor                # (N, C)
    stride: int = 1
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.coords.ndim != 2 or self.coords.shape[1] != 5:
            raise ValueError(f"coords must be (N, 5), got {tuple(self.coords.shape)}")
        if self.feats.ndim != 2 or len(self.feats) != len(self.coords):
            raise ValueError(f"feats must be (N, C) with N = {len(self.coords)}, "
                             f"got {tuple(self.feats.shape)}")

    def replace(self, feats: torch.Tensor) -> SparseTensor:
        """The same voxels (and cached maps) with other features."""
        return SparseTensor(self.coords, feats, self.stride, self._cache)

    @property
    def keys(self) -> torch.Tensor:
        if "keys" not in self._cache:
            self._cache["keys"] = encode(self.coords)
        return self._cache["keys"]

    @property
    def index(self) -> KeyIndex:
        if "index" not in self._cache:
            self._cache["index"] = KeyIndex(self.keys)
        return self._cache["index"]
