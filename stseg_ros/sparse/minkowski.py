"""The MinkowskiEngine backend (optional; ``get_backend("minkowski")``).

Runs the backend operations with MinkowskiEngine's convolution functions on
the same weights as the PyTorch backend. Two layouts differ and are
translated here rather than in the model:

- coordinates: MinkowskiEngine has one batch index and 3 spatial axes, so
  (batch, t) becomes its batch index ``batch * 256 + t`` (epochs stay apart),
  and its coordinates are in finest-voxel units (ours: the tensor's own grid);
- kernel offsets: its enumeration order differs from ``ops.kernel_offsets``;
  the permutation is measured once per kernel kind by probing single offsets.

One MinkowskiEngine coordinate manager serves all levels of a forward pass
(it travels in the tensors' caches), as its transposed convolution needs.
MinkowskiEngine 0.5.4 imports ``collections.Sequence``, gone since Python
3.10; it is restored before the import.
"""

from __future__ import annotations

import collections
import collections.abc
import functools
import warnings

import torch

from stseg_ros.sparse.ops import coarser, kernel_offsets
from stseg_ros.sparse.tensor import MAX_EPOCHS, KeyIndex, SparseTensor, encode

if not hasattr(collections, "Sequence"):
    collections.Sequence = collections.abc.Sequence          # for MinkowskiEngine 0.5.4
with warnings.catch_warnings():
    warnings.simplefilter("ignore")                         # "compiled with CPU_ONLY"
    import MinkowskiEngine as ME  # noqa: E402, N817
    from MinkowskiEngine.MinkowskiConvolution import (  # noqa: E402
        MinkowskiConvolutionFunction,
        MinkowskiConvolutionTransposeFunction,
    )
    from MinkowskiEngineBackend._C import ConvolutionMode  # noqa: E402

_KINDS = {"conv": (3, 1), "down": (2, 2), "up": (2, 2)}    # kernel size, stride


def _generator(kind: str) -> ME.KernelGenerator:
    size, stride = _KINDS[kind]
    return ME.KernelGenerator(kernel_size=size, stride=stride, dimension=3)


class _Level:
    """A tensor's place in MinkowskiEngine: manager, coordinate key, row order."""

    def __init__(self, manager, key, me_rows: torch.Tensor) -> None:
        self.manager, self.key = manager, key
        self.me_rows = me_rows            # our row of each MinkowskiEngine row


def _me_coords(x: SparseTensor) -> torch.Tensor:
    c = x.coords
    return torch.cat([(c[:, :1] * MAX_EPOCHS + c[:, 1:2]), c[:, 2:] * x.stride],
                     dim=1).int().cpu()


def _our_coords(me: torch.Tensor, stride: int) -> torch.Tensor:
    me = me.long()
    return torch.cat([me[:, :1] // MAX_EPOCHS, me[:, :1] % MAX_EPOCHS,
                      torch.div(me[:, 1:], stride, rounding_mode="floor")], dim=1)


def _level(x: SparseTensor) -> _Level:
    if "minkowski" not in x._cache:
        manager = ME.CoordinateManager(D=3)
        key, (unique, _) = manager.insert_and_map(_me_coords(x), [x.stride] * 3)
        if len(unique) != len(x.coords):
            raise ValueError("duplicate voxel coordinates")
        x._cache["minkowski"] = _Level(manager, key, unique.long().to(x.coords.device))
    return x._cache["minkowski"]


def _rows_of(level_rows_coords: torch.Tensor, stride: int, x_coords: torch.Tensor):
    """Our row (in ``x_coords``) of each MinkowskiEngine output coordinate."""
    ours = _our_coords(level_rows_coords, stride).to(x_coords.device)
    rows = KeyIndex(encode(x_coords)).find(encode(ours))
    if (rows < 0).any():
        raise RuntimeError("MinkowskiEngine produced voxels the PyTorch backend does not")
    return rows


@functools.cache
def kernel_permutation(kind: str) -> torch.Tensor:
    """For each MinkowskiEngine kernel slot, the ``ops.kernel_offsets`` index it
    corresponds to, measured by probing one slot at a time."""
    size, stride = _KINDS[kind]
    ours = kernel_offsets(size)
    manager = ME.CoordinateManager(D=3)
    if kind == "conv":                                       # centre voxel + 26 neighbours
        pts = torch.tensor([(0, *d) for d in ours], dtype=torch.int32)
        value = torch.arange(len(ours), dtype=torch.float32)[:, None] + 1
        key, (unique, _) = manager.insert_and_map(pts, [1, 1, 1])
        feats, out_key = value[unique.long()], key
        fn = MinkowskiConvolutionFunction
    elif kind == "down":                                     # the 8 children of one parent
        pts = torch.tensor([(0, *d) for d in ours], dtype=torch.int32)
        value = torch.arange(len(ours), dtype=torch.float32)[:, None] + 1
        key, (unique, _) = manager.insert_and_map(pts, [1, 1, 1])
        feats, out_key = value[unique.long()], manager.stride(key, [2, 2, 2])
        fn = MinkowskiConvolutionFunction
    else:                                                    # one parent -> 8 children
        fine_key, _ = manager.insert_and_map(
            torch.tensor([(0, *d) for d in ours], dtype=torch.int32), [1, 1, 1])
        key = manager.stride(fine_key, [2, 2, 2])
        feats, out_key = torch.ones((1, 1)), fine_key
        fn = MinkowskiConvolutionTransposeFunction
    slots = size ** 3
    perm = torch.empty(slots, dtype=torch.long)
    for slot in range(slots):
        weight = torch.zeros((slots, 1, 1))
        weight[slot] = 1.0
        out = fn.apply(feats, weight, _generator(kind), ConvolutionMode.DEFAULT, key,
                       out_key, manager)
        coords = manager.get_coordinates(out_key)
        if kind == "conv":
            centre = int(torch.nonzero((coords[:, 1:] == 0).all(1)).squeeze())
            perm[slot] = int(out[centre, 0].item()) - 1
        elif kind == "down":
            perm[slot] = int(out[0, 0].item()) - 1
        else:
            hit = torch.nonzero(out[:, 0] != 0).squeeze(1)
            offset = tuple(int(v) for v in coords[int(hit)][1:])
            perm[slot] = ours.index(offset)
    if sorted(perm.tolist()) != list(range(slots)):
        raise RuntimeError(f"could not match MinkowskiEngine's {kind} kernel layout")
    return perm


def _run(kind: str, x: SparseTensor, level: _Level, out_key, out_rows: torch.Tensor,
         size: int, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """One MinkowskiEngine convolution of ``kind`` over ``x`` (at ``level``) into
    ``out_key``; the result in our row order (``out_rows``: our row of each of
    its rows, ``size`` rows in all)."""
    function = (MinkowskiConvolutionTransposeFunction if kind == "up"
                else MinkowskiConvolutionFunction)
    feats = x.feats.index_select(0, level.me_rows).float().cpu()
    w = weight[kernel_permutation(kind).to(weight.device)].float().cpu()
    out = function.apply(feats, w, _generator(kind), ConvolutionMode.DEFAULT, level.key,
                         out_key, level.manager)
    result = x.feats.new_zeros((size, weight.shape[2])).index_copy(0, out_rows, out.to(x.feats))
    return result + bias if bias is not None else result


class MinkowskiBackend:
    name = "minkowski"

    def conv(self, x, weight, bias=None):
        if weight.shape[0] != 27:
            raise ValueError("the MinkowskiEngine backend implements 3x3x3 convolutions only")
        lv = _level(x)
        return x.replace(_run("conv", x, lv, lv.key, lv.me_rows, len(x.coords), weight, bias))

    def downsample(self, x, weight, bias=None):
        lv = _level(x)
        out_key = lv.manager.stride(lv.key, [2, 2, 2])
        coords, _ = coarser(x)
        rows = _rows_of(lv.manager.get_coordinates(out_key), x.stride * 2, coords)
        coarse = SparseTensor(coords, _run("down", x, lv, out_key, rows, len(coords), weight,
                                           bias), x.stride * 2)
        coarse._cache["minkowski"] = _Level(lv.manager, out_key, rows)
        return coarse

    def upsample(self, coarse, fine, weight, bias=None):
        lv_fine = _level(fine)
        if "minkowski" not in coarse._cache:
            raise ValueError("the coarse tensor did not come from this backend's downsample")
        return fine.replace(_run("up", coarse, coarse._cache["minkowski"], lv_fine.key,
                                 lv_fine.me_rows, len(fine.coords), weight, bias))
