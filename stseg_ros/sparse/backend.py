"""Sparse convolution backends behind one interface.

A backend provides the three operations the network is built from, all on
``SparseTensor`` with weights laid out as (kernel offsets in
``ops.kernel_offsets`` order, C_in, C_out):

- ``conv(x, weight, bias)``: submanifold convolution (same voxels out);
- ``downsample(x, weight, bias)``: 2x2x2 convolution with stride 2;
- ``upsample(coarse, fine, weight, bias)``: its transpose onto ``fine``'s voxels.

``torch`` (the default) is ``stseg_ros.sparse.ops``: plain PyTorch, CPU and
CUDA. ``minkowski`` runs the same operations on MinkowskiEngine, when it is
installed; the same weights give the same outputs (``test/test_sparse.py``).
"""

from __future__ import annotations

from typing import Protocol

import torch

from stseg_ros.sparse import ops
from stseg_ros.sparse.tensor import SparseTensor


class Backend(Protocol):
    name: str

    def conv(self, x: SparseTensor, weight: torch.Tensor,
             bias: torch.Tensor | None = None) -> SparseTensor: ...

    def downsample(self, x: SparseTensor, weight: torch.Tensor,
                   bias: torch.Tensor | None = None) -> SparseTensor: ...

    def upsample(self, coarse: SparseTensor, fine: SparseTensor, weight: torch.Tensor,
                 bias: torch.Tensor | None = None) -> SparseTensor: ...


class TorchBackend:
    name = "torch"

    def conv(self, x, weight, bias=None):
        return ops.conv(x, weight, bias)

    def downsample(self, x, weight, bias=None):
        return ops.downsample(x, weight, bias)

    def upsample(self, coarse, fine, weight, bias=None):
        return ops.upsample(coarse, fine, weight, bias)


BACKENDS = ("torch", "minkowski")


def get_backend(name: str = "torch") -> Backend:
    """A backend by name; ``minkowski`` needs MinkowskiEngine installed."""
    if name == "torch":
        return TorchBackend()
    if name == "minkowski":
        from stseg_ros.sparse.minkowski import MinkowskiBackend

        return MinkowskiBackend()
    raise ValueError(f"unknown sparse backend {name!r}; available: {', '.join(BACKENDS)}")
