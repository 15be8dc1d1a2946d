"""Sparse convolutions in plain PyTorch: kernel maps from sorted keys and
``torch.searchsorted``, then per kernel offset ``index_select`` -> matmul ->
``index_add_``. Runs unchanged on CPU and CUDA and is differentiable.

Weights are (K, C_in, C_out) with the kernel offsets in ``kernel_offsets``
order (x slowest, z fastest), the layout of ``torch.nn.functional.conv3d``'s
kernel flattened over (kx, ky, kz).
"""

from __future__ import annotations

import itertools

import torch

from stseg_ros.sparse.tensor import SparseTensor, encode, offset_key


def kernel_offsets(size: int, dilation: int = 1) -> list[tuple[int, int, int]]:
    """Offsets of a cubic kernel: centred for odd sizes, (0..size-1) for even."""
    first = -(size // 2) if size % 2 else 0
    steps = [dilation * (first + i) for i in range(size)]
    return list(itertools.product(steps, repeat=3))


def neighbour_pairs(x: SparseTensor, size: int = 3, dilation: int = 1):
    """Per kernel offset d: (rows of the voxels p, rows of their neighbours p + d),
    cached on the tensor."""
    name = ("pairs", size, dilation)
    if name not in x._cache:
        pairs = []
        for delta in kernel_offsets(size, dilation):
            found = x.index.find(x.keys + offset_key(delta))
            out = torch.nonzero(found >= 0).squeeze(1)
            pairs.append((out, found[out]))
        x._cache[name] = pairs
    return x._cache[name]


def conv(x: SparseTensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
         dilation: int = 1) -> SparseTensor:
    """Submanifold convolution: out[p] = sum_d W[d]^T x[p + d] over active p + d,
    on the same voxels as ``x``. ``weight`` is (size^3, C_in, C_out)."""
    size = round(weight.shape[0] ** (1 / 3))
    if size ** 3 != weight.shape[0] or weight.shape[1] != x.feats.shape[1]:
        raise ValueError(f"weight {tuple(weight.shape)} does not fit a cubic kernel over "
                         f"{x.feats.shape[1]} channels")
    out = x.feats.new_zeros((len(x.coords), weight.shape[2]))
    for k, (rows, neighbours) in enumerate(neighbour_pairs(x, size, dilation)):
        if len(rows):
            out.index_add_(0, rows, x.feats.index_select(0, neighbours) @ weight[k])
    if bias is not None:
        out = out + bias
    return x.replace(out)


def coarser_coords(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unique coords on the twice coarser grid, parent row of each voxel)."""
    parent = coords.clone()
    parent[:, 2:] = torch.div(coords[:, 2:], 2, rounding_mode="floor")
    keys = encode(parent)
    unique, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((len(unique),), len(keys), dtype=torch.long, device=keys.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(keys), device=keys.device), "amin")
    return parent[first], inverse


def coarser(x: SparseTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``coarser_coords`` of a tensor's voxels, cached on it (its downsampling and
    the upsampling back onto it share them)."""
    if "coarser" not in x._cache:
        x._cache["coarser"] = coarser_coords(x.coords)
    return x._cache["coarser"]


def _child_slot(coords: torch.Tensor) -> torch.Tensor:
    """Which of the 8 cells of its parent a voxel is, in ``kernel_offsets(2)`` order."""
    bit = torch.remainder(coords[:, 2:], 2)
    return bit[:, 0] * 4 + bit[:, 1] * 2 + bit[:, 2]


def downsample(x: SparseTensor, weight: torch.Tensor,
               bias: torch.Tensor | None = None) -> SparseTensor:
    """Stride-2 convolution with a 2x2x2 kernel: out[q] = sum_k W[k]^T x[2q + k].
    ``weight`` is (8, C_in, C_out)."""
    coords, parent = coarser(x)
    slot = _child_slot(x.coords)
    out = x.feats.new_zeros((len(coords), weight.shape[2]))
    for k in range(8):
        rows = torch.nonzero(slot == k).squeeze(1)
        if len(rows):
            out.index_add_(0, parent[rows], x.feats.index_select(0, rows) @ weight[k])
    if bias is not None:
        out = out + bias
    return SparseTensor(coords, out, x.stride * 2)


def upsample(coarse: SparseTensor, fine: SparseTensor, weight: torch.Tensor,
             bias: torch.Tensor | None = None) -> SparseTensor:
    """Transposed stride-2 convolution onto the voxels of ``fine``:
    out[2q + k] = W[k]^T coarse[q]. ``weight`` is (8, C_in, C_out)."""
    coords, parent = coarser(fine)
    if len(coords) != len(coarse.coords) or not torch.equal(coords, coarse.coords):
        raise ValueError("the coarse tensor is not the downsampled voxels of the fine one")
    slot = _child_slot(fine.coords)
    out = coarse.feats.new_zeros((len(fine.coords), weight.shape[2]))
    for k in range(8):
        rows = torch.nonzero(slot == k).squeeze(1)
        if len(rows):
            out.index_copy_(0, rows, coarse.feats.index_select(0, parent[rows]) @ weight[k])
    if bias is not None:
        out = out + bias
    return fine.replace(out)
