"""The 4D segmentation network: a sparse U-Net over (t, x, y, z) voxels.

Convolutions are spatial only, so they never mix epochs. Epochs exchange
information in ``TimeSharing`` layers: every voxel receives the mean feature
of the voxels at the same place in all epochs of its sample. Sharing is
strong at the coarse levels (a piece of furniture at 40-80 cm resolution is
the same thing in every revisit) and absent at the finest ones, where a
moved chair's old and new places must stay different. Two heads read the
finest level: semantic logits over ``class_ids`` (NYU40) and an instance
embedding for clustering (SSEN).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from stseg_ros.core.classes import class_id
from stseg_ros.learned.voxels import IN_CHANNELS
from stseg_ros.sparse.backend import Backend, get_backend
from stseg_ros.sparse.tensor import SparseTensor, encode

# what the generated rooms hold: structure, fixtures and the furniture families
DEFAULT_CLASSES = tuple(class_id(n) for n in (
    "wall", "floor", "ceiling", "door", "window", "chair", "table", "desk", "sofa", "bed",
    "cabinet", "bookshelf", "lamp", "television", "box", "pillow", "otherprop",
    "night stand", "dresser"))
STRUCTURE = tuple(class_id(n) for n in ("wall", "floor", "ceiling"))


@dataclass(frozen=True)
class ModelConfig:
    voxel: float = 0.05                                  # m, finest grid
    channels: tuple[int, ...] = (16, 32, 48, 64, 96)     # per level, finest first
    time_sharing: tuple[float, ...] = (0.0, 0.0, 0.5, 1.0, 1.0)   # initial strength per level
    embed_dim: int = 8
    class_ids: tuple[int, ...] = DEFAULT_CLASSES

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class SparseConv(nn.Module):
    """Submanifold 3x3x3 convolution, or stride-2 down/up 2x2x2 convolution."""

    def __init__(self, c_in: int, c_out: int, kind: str = "conv", bias: bool = False) -> None:
        super().__init__()
        k = 27 if kind == "conv" else 8
        self.kind = kind
        self.weight = nn.Parameter(torch.randn(k, c_in, c_out) * math.sqrt(2.0 / (k * c_in)))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None

    def forward(self, x: SparseTensor, backend: Backend,
                fine: SparseTensor | None = None) -> SparseTensor:
        if self.kind == "conv":
            return backend.conv(x, self.weight, self.bias)
        if self.kind == "down":
            return backend.downsample(x, self.weight, self.bias)
        return backend.upsample(x, fine, self.weight, self.bias)


class NormAct(nn.Module):
    def __init__(self, c: int, act: bool = True) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(c)
        self.act = act

    def forward(self, x: SparseTensor) -> SparseTensor:
        f = self.norm(x.feats)
        return x.replace(torch.relu(f) if self.act else f)


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c: int) -> None:
        super().__init__()
        self.conv1, self.norm1 = SparseConv(c_in, c), NormAct(c)
        self.conv2, self.norm2 = SparseConv(c, c), NormAct(c, act=False)
        self.skip = nn.Linear(c_in, c, bias=False) if c_in != c else None

    def forward(self, x: SparseTensor, backend: Backend) -> SparseTensor:
        y = self.norm2(self.conv2(self.norm1(self.conv1(x, backend)), backend))
        skip = x.feats if self.skip is None else self.skip(x.feats)
        return x.replace(torch.relu(y.feats + skip))


def same_place_groups(x: SparseTensor) -> tuple[torch.Tensor, int]:
    """Group index of each voxel: voxels of one batch item at the same (x, y, z)
    share it whatever their epoch. Cached on the tensor."""
    if "places" not in x._cache:
        place = x.coords.clone()
        place[:, 1] = 0
        _, group = torch.unique(encode(place), return_inverse=True)
        x._cache["places"] = (group, int(group.max()) + 1 if len(group) else 0)
    return x._cache["places"]


class TimeSharing(nn.Module):
    """Add to each voxel a learned map of the mean feature at its place over all
    epochs; ``strength`` scales it (learned, initialised per level)."""

    def __init__(self, c: int, strength: float) -> None:
        super().__init__()
        self.mix = nn.Linear(c, c)
        self.strength = nn.Parameter(torch.tensor(float(strength)))

    def forward(self, x: SparseTensor) -> SparseTensor:
        group, n = same_place_groups(x)
        total = x.feats.new_zeros((n, x.feats.shape[1])).index_add_(0, group, x.feats)
        count = x.feats.new_zeros(n).index_add_(0, group, x.feats.new_ones(len(group)))
        pooled = (total / count[:, None])[group]
        return x.replace(x.feats + self.strength * torch.relu(self.mix(pooled)))


class UNet4D(nn.Module):
    def __init__(self, cfg: ModelConfig = ModelConfig(), backend: str = "torch") -> None:
        super().__init__()
        self.cfg = cfg
        self.backend = get_backend(backend)
        ch = cfg.channels
        self.stem, self.stem_norm = SparseConv(IN_CHANNELS, ch[0]), NormAct(ch[0])
        self.enc = nn.ModuleList([ResBlock(ch[0], ch[0])])
        self.down = nn.ModuleList()
        self.down_norm = nn.ModuleList()
        for i in range(1, len(ch)):
            self.down.append(SparseConv(ch[i - 1], ch[i], "down"))
            self.down_norm.append(NormAct(ch[i]))
            self.enc.append(ResBlock(ch[i], ch[i]))
        self.share = nn.ModuleDict({str(i): TimeSharing(ch[i], s)
                                    for i, s in enumerate(cfg.time_sharing) if s > 0})
        self.up = nn.ModuleList()
        self.up_norm = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i in range(len(ch) - 1, 0, -1):
            self.up.append(SparseConv(ch[i], ch[i - 1], "up"))
            self.up_norm.append(NormAct(ch[i - 1]))
            self.dec.append(ResBlock(2 * ch[i - 1], ch[i - 1]))
        self.semantic = nn.Linear(ch[0], len(cfg.class_ids))
        self.embedding = nn.Linear(ch[0], cfg.embed_dim)

    def forward(self, coords: torch.Tensor, feats: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per voxel: (semantic logits (V, classes), embedding (V, embed_dim))."""
        b = self.backend
        x = self.stem_norm(self.stem(SparseTensor(coords, feats), b))
        skips = []
        for level, block in enumerate(self.enc):
            if level > 0:
                x = self.down_norm[level - 1](self.down[level - 1](x, b))
            x = block(x, b)
            if str(level) in self.share:
                x = self.share[str(level)](x)
            skips.append(x)
        for k, (up, norm, block) in enumerate(zip(self.up, self.up_norm, self.dec,
                                                  strict=True)):
            fine = skips[-k - 2]
            x = norm(up(x, b, fine))
            x = block(fine.replace(torch.cat([x.feats, fine.feats], dim=1)), b)
        return self.semantic(x.feats), self.embedding(x.feats)


@dataclass
class Checkpoint:
    """What a weights file holds: the config, the tensors, and how they were made."""

    config: ModelConfig
    state: dict[str, torch.Tensor]
    info: dict = field(default_factory=dict)


def save_weights(path, model: UNet4D, info: dict | None = None, half: bool = True) -> None:
    """Weights for shipping: float16 tensors (half the size), config and info as
    plain data, loadable without executing code (``load_weights``)."""
    state = {k: (v.half() if half and v.is_floating_point() else v).cpu().contiguous()
             for k, v in model.state_dict().items()}
    torch.save({"format": "stseg_ros.unet4d", "version": 1, "config": model.cfg.to_dict(),
                "state": state, "info": info or {}}, path)


def load_weights(path) -> Checkpoint:
    """A weights file, loaded with ``weights_only`` (tensors and plain data only;
    a file that would run code on loading is refused)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:                     # noqa: BLE001 - any unreadable file
        raise ValueError(f"{path}: not a stseg_ros weights file ({err})") from None
    if not isinstance(blob, dict) or blob.get("format") != "stseg_ros.unet4d":
        raise ValueError(f"{path}: not a stseg_ros weights file")
    state = {k: v.float() if v.is_floating_point() else v for k, v in blob["state"].items()}
    return Checkpoint(ModelConfig.from_dict(blob["config"]), state, blob.get("info", {}))


def build_model(checkpoint: Checkpoint, backend: str = "torch",
                device: str = "cpu") -> UNet4D:
    model = UNet4D(checkpoint.config, backend)
    model.load_state_dict(checkpoint.state)
    return model.to(device).eval()
