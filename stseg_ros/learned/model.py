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
import pickle
import warnings
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import torch
from torch import nn

from stseg_ros.core.classes import class_id
from stseg_ros.core.weights import NOT_LOADED, WeightsError
from stseg_ros.learned.voxels import IN_CHANNELS
from stseg_ros.sparse.backend import Backend, get_backend
from stseg_ros.sparse.tensor import SparseTensor, encode

# what the generated rooms hold: structure, fixtures and the furniture families
DEFAULT_CLASSES = tuple(class_id(n) for n in (
    "wall", "floor", "ceiling", "door", "window", "chair", "table", "desk", "sofa", "bed",
    "cabinet", "bookshelf", "lamp", "television", "box", "pillow", "otherprop",
    "night stand", "dresser"))
WEIGHTS_FORMAT, WEIGHTS_VERSION = "stseg_ros.unet4d", 1
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
    torch.save({"format": WEIGHTS_FORMAT, "version": WEIGHTS_VERSION, "config": model.cfg.to_dict(),
                "state": state, "info": info or {}}, path)


def load_weights(path) -> Checkpoint:
    """A weights file, loaded with ``weights_only`` (tensors and plain data only;
    a file that would run code on loading is refused). Content that does not
    build the network it describes is a WeightsError naming the file, never a
    traceback from deep inside torch."""
    blob = load_plain(path, "stseg_ros weights")
    if not isinstance(blob, dict) or blob.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path}: {NOT_LOADED} (no format tag {WEIGHTS_FORMAT!r})")
    version = blob.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version > WEIGHTS_VERSION:
        raise WeightsError(f"{path}: weights version {version!r}; this stseg_ros reads up to "
                           f"{WEIGHTS_VERSION}")
    config = config_from_dict(blob.get("config"), path)
    state, info = blob.get("state"), blob.get("info", {})
    if not isinstance(info, dict):
        raise WeightsError(f"{path}: 'info' is a {type(info).__name__}, expected a dict")
    check_state(state, UNet4D(config), path, "'state'")
    weights = info.get("class_weights")
    if weights is not None:
        try:
            w = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError):
            w = np.zeros(0)
        if w.shape != (len(config.class_ids),) or not (np.isfinite(w) & (w > 0)).all():
            raise WeightsError(f"{path}: its class weights (info) must be {len(config.class_ids)} "
                               "positive numbers, one per class")
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return Checkpoint(config, state, info)


def load_plain(path, what: str):
    """``torch.load`` with ``weights_only``, its refusals told without torch's
    advice to load the file unrestricted (which would run whatever it holds)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")       # pickle protocol notes: not the user's
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise WeightsError(f"{path}: a folder, not a {what} file") from None
    except pickle.UnpicklingError:
        raise WeightsError(f"{path}: {NOT_LOADED} (it holds objects other than tensors and "
                           "plain data, which could run code on loading, or is no torch "
                           "file at all)") from None
    except Exception as err:                     # noqa: BLE001 - any unreadable file
        reason = str(err).splitlines()[0][:120] if str(err) else "it ends too early"
        raise WeightsError(f"{path}: {NOT_LOADED} (unreadable, cut short or damaged: "
                           f"{reason})") from None


def config_from_dict(d, path) -> ModelConfig:
    """The model config of a weights file or checkpoint, checked key by key."""
    if not isinstance(d, dict):
        raise WeightsError(f"{path}: 'config' is a {type(d).__name__}, expected a dict")
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(map(str, set(d) - known))
    if unknown:
        raise WeightsError(f"{path}: config has unknown keys {', '.join(unknown)}")

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    def count(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v > 0

    expect = {"voxel": ("a positive number", lambda v: number(v) and v > 0),
              "embed_dim": ("a positive integer", count),
              "channels": ("a list of positive integers", count),
              "class_ids": ("a list of NYU40 ids (0 or more)", lambda v: count(v) or v == 0),
              "time_sharing": ("a list of numbers", number)}
    for key, value in d.items():
        what, ok = expect[key]
        if key in ("voxel", "embed_dim"):
            fits = ok(value)
        else:
            fits = isinstance(value, (list, tuple)) and bool(value) and all(map(ok, value))
        if not fits:
            raise WeightsError(f"{path}: config {key!r} is {value!r}, expected {what}")
    config = ModelConfig.from_dict(d)
    if len(config.time_sharing) != len(config.channels):
        raise WeightsError(f"{path}: config has {len(config.channels)} channel levels but "
                           f"{len(config.time_sharing)} time_sharing strengths")
    try:
        UNet4D(config)
    except (TypeError, ValueError, RuntimeError, IndexError) as err:
        reason = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise WeightsError(f"{path}: config does not describe a network ({reason})") from None
    return config


def check_state(state, model: nn.Module, path, what: str) -> None:
    """``state`` has exactly ``model``'s tensors, each of its shape."""
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: {what} is a {type(state).__name__}, expected a dict of "
                           "tensors")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [str(k) for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
             if isinstance(state[k], torch.Tensor) else f"{k} ({type(state[k]).__name__})"
             for k, v in expected.items() if k in state and (
                 not isinstance(state[k], torch.Tensor) or state[k].shape != v.shape)]
    for problem, keys in (("lacks", missing), ("has unknown tensors", unexpected),
                          ("has tensors of the wrong shape:", wrong)):
        if keys:
            more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
            raise WeightsError(f"{path}: {what} {problem} {', '.join(keys[:3])}{more} for the "
                               "network its config describes")


def build_model(checkpoint: Checkpoint, backend: str = "torch",
                device: str = "cpu") -> UNet4D:
    model = UNet4D(checkpoint.config, backend)
    model.load_state_dict(checkpoint.state)
    return model.to(device).eval()
