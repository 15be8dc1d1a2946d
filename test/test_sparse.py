"""Sparse convolution in plain PyTorch against dense ``conv3d``: on a random
set of active voxels (inactive ones zero) the outputs at active voxels agree,
for submanifold, strided and transposed convolutions, and epochs never mix."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional

from stseg_ros.sparse.ops import conv, downsample, upsample
from stseg_ros.sparse.tensor import SparseTensor, encode

GRID, C_IN, C_OUT = 8, 3, 4


def _random_voxels(seed: int, epochs: int = 1, density: float = 0.3) -> SparseTensor:
    g = torch.Generator().manual_seed(seed)
    coords = []
    for t in range(epochs):
        active = torch.nonzero(torch.rand((GRID,) * 3, generator=g) < density)
        coords.append(torch.cat([torch.zeros(len(active), 1, dtype=torch.long),
                                 torch.full((len(active), 1), t), active - GRID // 2], 1))
    coords = torch.cat(coords)
    coords = coords[torch.randperm(len(coords), generator=g)]     # any row order
    feats = torch.randn(len(coords), C_IN, generator=g, dtype=torch.float64)
    return SparseTensor(coords, feats)


def _dense(x: SparseTensor, t: int = 0, shift: int = GRID // 2) -> torch.Tensor:
    grid = torch.zeros((x.feats.shape[1],) + (GRID,) * 3, dtype=x.feats.dtype)
    rows = x.coords[:, 1] == t
    c = x.coords[rows, 2:] + shift
    grid[:, c[:, 0], c[:, 1], c[:, 2]] = x.feats[rows].T
    return grid


def _at(dense: torch.Tensor, coords: torch.Tensor, shift: int) -> torch.Tensor:
    c = coords[:, 2:] + shift
    return dense[:, c[:, 0], c[:, 1], c[:, 2]].T


@pytest.mark.parametrize("dilation", [1, 2])
def test_submanifold_conv_equals_dense_conv_at_active_voxels(dilation):
    x = _random_voxels(0)
    w = torch.randn(C_OUT, C_IN, 3, 3, 3, dtype=torch.float64)
    bias = torch.randn(C_OUT, dtype=torch.float64)
    dense = functional.conv3d(_dense(x)[None], w, bias, padding=dilation, dilation=dilation)[0]
    sparse = conv(x, w.permute(2, 3, 4, 1, 0).reshape(27, C_IN, C_OUT), bias, dilation)
    torch.testing.assert_close(sparse.feats, _at(dense, x.coords, GRID // 2))
    assert torch.equal(sparse.coords, x.coords)


def test_strided_and_transposed_conv_equal_their_dense_versions():
    x = _random_voxels(1)
    w_down = torch.randn(C_OUT, C_IN, 2, 2, 2, dtype=torch.float64)
    w_up = torch.randn(C_OUT, C_IN, 2, 2, 2, dtype=torch.float64)
    down = downsample(x, w_down.permute(2, 3, 4, 1, 0).reshape(8, C_IN, C_OUT))
    dense_down = functional.conv3d(_dense(x)[None], w_down, stride=2)[0]
    assert down.stride == 2
    torch.testing.assert_close(down.feats, _at(dense_down, down.coords, GRID // 4))
    # every coarse voxel has a child, and only those exist
    assert len(down.coords) == len(torch.unique(encode(torch.cat(
        [x.coords[:, :2], torch.div(x.coords[:, 2:], 2, rounding_mode="floor")], 1))))

    coarse = down.replace(torch.randn(len(down.coords), C_IN, dtype=torch.float64))
    up = upsample(coarse, x, w_up.permute(2, 3, 4, 0, 1).reshape(8, C_OUT, C_IN).transpose(1, 2))
    dense_up = functional.conv_transpose3d(_dense(coarse, shift=GRID // 4)[None],
                                  w_up.transpose(0, 1), stride=2)[0]
    torch.testing.assert_close(up.feats, _at(dense_up, x.coords, GRID // 2))


def test_epochs_are_kept_apart():
    x = _random_voxels(2, epochs=2)
    w = torch.randn(27, C_IN, C_OUT, dtype=torch.float64)
    both = conv(x, w)
    for t in (0, 1):
        rows = x.coords[:, 1] == t
        alone = conv(SparseTensor(x.coords[rows], x.feats[rows]), w)
        torch.testing.assert_close(both.feats[rows], alone.feats)


def test_gradients_match_finite_differences():
    x = _random_voxels(3, density=0.05)
    small = torch.randn(len(x.coords), 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(27, 2, 2, dtype=torch.float64, requires_grad=True)
    w8 = torch.randn(8, 2, 2, dtype=torch.float64, requires_grad=True)

    def net(f, w, w8):
        h = conv(x.replace(f), w)
        return upsample(downsample(h, w8), h, w8.transpose(1, 2).contiguous()).feats

    assert torch.autograd.gradcheck(net, (small, w, w8))


def test_coordinates_out_of_range_are_refused():
    with pytest.raises(ValueError, match="out of range"):
        encode(torch.tensor([[0, 0, 40000, 0, 0]]))


def _minkowski_backend():
    """The MinkowskiEngine backend; ``make test`` installs it and sets
    STSEG_REQUIRE_MINKOWSKI=1, so there its absence fails instead of skipping."""
    import os

    from stseg_ros.sparse.backend import get_backend

    try:
        return get_backend("minkowski")
    except ImportError as err:
        if os.environ.get("STSEG_REQUIRE_MINKOWSKI") == "1":
            raise
        pytest.skip(f"MinkowskiEngine not installed ({err})")


def test_minkowski_backend_gives_the_same_outputs_and_gradients():
    from stseg_ros.sparse.backend import get_backend

    ours, theirs = get_backend("torch"), _minkowski_backend()
    x = _random_voxels(5, epochs=3)
    x = SparseTensor(x.coords, x.feats.float())
    g = torch.Generator().manual_seed(9)
    w_conv = torch.randn(27, C_IN, C_OUT, generator=g)
    w_down = torch.randn(8, C_IN, 6, generator=g)
    w_up = torch.randn(8, 6, C_OUT, generator=g)
    results = []
    for backend in (ours, theirs):
        weights = [w.clone().requires_grad_() for w in (w_conv, w_down, w_up)]
        fine = SparseTensor(x.coords, x.feats)
        y = backend.conv(fine, weights[0])
        coarse = backend.downsample(fine, weights[1])
        z = backend.upsample(coarse, fine, weights[2])
        (y.feats.square().sum() + z.feats.sin().sum()).backward()
        results.append((y.feats, coarse.coords, coarse.feats, z.feats,
                        *[w.grad for w in weights]))
    for a, b in zip(*results, strict=True):
        assert a.shape == b.shape
        assert torch.allclose(a.float(), b.float(), atol=1e-4, rtol=1e-4)


def test_the_network_gives_the_same_outputs_on_both_backends():
    from stseg_ros.learned.model import ModelConfig, UNet4D

    _minkowski_backend()
    torch.manual_seed(0)
    cfg = ModelConfig(channels=(8, 16, 16), time_sharing=(0.0, 0.5, 1.0), embed_dim=4)
    ours, theirs = UNet4D(cfg, "torch").eval(), UNet4D(cfg, "minkowski").eval()
    theirs.load_state_dict(ours.state_dict())
    g = torch.Generator().manual_seed(3)
    coords = torch.cat([torch.zeros(4000, 1, dtype=torch.long),
                        torch.randint(0, 3, (4000, 1), generator=g),
                        torch.randint(-16, 16, (4000, 3), generator=g)], 1).unique(dim=0)
    feats = torch.randn(len(coords), 5, generator=g)
    with torch.no_grad():
        for a, b in zip(ours(coords, feats), theirs(coords, feats), strict=True):
            assert torch.allclose(a, b, atol=1e-4)
