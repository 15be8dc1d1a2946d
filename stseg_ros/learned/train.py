"""``stseg train``: fit the 4D network on generated datasets.

Deterministic (sample ``i`` and the learning rate at step ``i`` depend only
on the seed and ``i``; the model starts from ``torch.manual_seed(seed)``)
and resumable: ``OUT/checkpoint.pt`` holds the model, the optimiser and the
step, written every ``checkpoint_every`` steps, and a rerun with the same
OUT continues from it. ``OUT/log.jsonl`` gets one line of losses per
``log_every`` steps; ``OUT/weights.pt`` is the shipped form (float16,
loadable without running code) with the training facts in its ``info``,
including the class weights of the semantic loss (the segmenter takes part
of their bias back out at inference).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from stseg_ros.core.classes import class_name
from stseg_ros.core.weights import WeightsError
from stseg_ros.learned.data import SampleConfig, class_weights, load_scenes, make_sample
from stseg_ros.learned.fused import load_fused
from stseg_ros.learned.losses import cross_time_contrast, discriminative_loss, semantic_loss
from stseg_ros.learned.model import (
    ModelConfig,
    UNet4D,
    check_state,
    load_plain,
    load_weights,
    save_weights,
)
from stseg_ros.learned.revisits import load_revisits

# settings a resumed run may change: they do not alter the samples or the loss
RESUMABLE = ("iterations", "checkpoint_every", "log_every")


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 2000
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    seed: int = 0
    contrast_weight: float = 0.5
    class_balance: float = 0.5      # semantic CE weights: class frequency ** -class_balance
    revisit_every: int = 4          # with unlabelled revisits: every n-th step is one of them
    revisit_weight: float = 0.5     # weight of their cross-time contrast
    checkpoint_every: int = 50
    log_every: int = 10
    sample: SampleConfig = field(default_factory=SampleConfig)


def learning_rate(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 1 % of ``lr``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    done = (step - cfg.warmup) / max(cfg.iterations - cfg.warmup, 1)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0))))


def losses(model: UNet4D, sample, device: str,
           weights: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    coords = torch.from_numpy(sample.coords).to(device)
    logits, emb = model(coords, torch.from_numpy(sample.feats).to(device))
    instance = torch.from_numpy(sample.instance).to(device)
    target = torch.from_numpy(sample.semantic).to(device)
    return {"semantic": semantic_loss(logits, target, weights),
            "instance": discriminative_loss(emb, instance),
            "contrast": cross_time_contrast(emb, instance, coords[:, 1])}


def revisit_losses(model: UNet4D, sample, device: str) -> dict[str, torch.Tensor]:
    """An unlabelled revisit sample: only the cross-time contrast of its unchanged
    objects (``revisits.py``)."""
    coords = torch.from_numpy(sample.coords).to(device)
    _, emb = model(coords, torch.from_numpy(sample.feats).to(device))
    return {"revisit": cross_time_contrast(emb, torch.from_numpy(sample.instance).to(device),
                                           coords[:, 1])}


def train(datasets: list[Path], out: Path, cfg: TrainConfig = TrainConfig(),
          model_cfg: ModelConfig | None = None, device: str = "cpu", progress: bool = True,
          log: Callable[[str], None] = print, revisits: list[Path] = (),
          fused: list[tuple[Path, Path]] = (), init: Path | None = None) -> Path:
    """Train (or continue training) into ``out``; returns the weights file.
    ``revisits``: object memories (or folders of them) whose unchanged objects
    between registered epochs add a self-supervised step every
    ``cfg.revisit_every`` steps. ``fused``: (generated dataset, its ``stseg
    run`` output) pairs whose fused, registered scans join the labelled scenes
    (``fused.py``). ``init``: weights to start from instead of a random
    network (fine-tuning); their config is the network's."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start_from = load_weights(init) if init is not None else None
    if start_from is not None and model_cfg is not None and model_cfg != start_from.config:
        raise ValueError(f"{init} holds another network than the model config asked for")
    model_cfg = model_cfg or (start_from.config if start_from else ModelConfig())
    torch.manual_seed(cfg.seed)
    model = UNet4D(model_cfg).to(device)
    if start_from is not None:
        model.load_state_dict(start_from.state)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    step = 0
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.is_file():
        ckpt = load_plain(ckpt_path, "stseg train checkpoint")
        lacking = [k for k in ("model", "optimizer", "step", "config", "train")
                   if not isinstance(ckpt, dict) or k not in ckpt]
        if lacking:
            raise WeightsError(f"{ckpt_path}: not a checkpoint stseg train wrote (lacks "
                               f"{', '.join(lacking)}); it was not loaded: use another --out "
                               "or delete it")
        if not isinstance(ckpt["train"], dict) or not isinstance(ckpt["step"], int):
            raise WeightsError(f"{ckpt_path}: 'train' or 'step' is not what stseg train "
                               "writes; use another --out or delete it")
        if ckpt["config"] != model_cfg.to_dict():
            raise ValueError(f"{ckpt_path} was written with another model config; "
                             "use another --out or delete it")
        # a setting newer than the checkpoint had its default value then
        then = {**_plain(asdict(TrainConfig())), **ckpt["train"]}
        changed = sorted(k for k, v in _plain(asdict(cfg)).items()
                         if k not in RESUMABLE and then.get(k) != v)
        if changed:
            raise ValueError(f"{ckpt_path} was written with another {', '.join(changed)}; "
                             "resuming would mix two trainings: use another --out or delete it")
        check_state(ckpt["model"], model, ckpt_path, "'model'")
        try:
            opt.load_state_dict(ckpt["optimizer"])
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
            raise WeightsError(f"{ckpt_path}: its optimizer state does not fit the network "
                               f"({type(err).__name__}); use another --out or delete it") from None
        model.load_state_dict(ckpt["model"])
        step = int(ckpt["step"])
        log(f"resuming from step {step} of {cfg.iterations} ({ckpt_path})")
    if revisits and cfg.revisit_every < 1:
        raise ValueError(f"--revisit-every must be 1 or more, got {cfg.revisit_every}")
    # first: cheaper than the datasets, and a wrong file is told at once
    revisit_scenes = load_revisits(list(revisits), progress=progress) if revisits else []
    if revisits:
        if not revisit_scenes:
            raise ValueError("the revisit memories hold no room with two registered epochs")
        unchanged = sum(len(np.unique(np.concatenate([e.instance[e.instance > 0] for e in s])))
                        for s in revisit_scenes)
        log(f"{len(revisit_scenes)} unlabelled rooms, {unchanged} unchanged objects; "
            f"every {cfg.revisit_every}th step is one of them")
    fused_scenes = []        # before the datasets too: a wrong pairing is told at once
    if fused:
        fused_scenes, coverage = load_fused(list(fused), model_cfg.class_ids, progress)
        if coverage.points and coverage.share < 0.5:
            raise ValueError(f"only {coverage.share:.0%} of the fused scans lie on their "
                             "ground truth: are the runs of these datasets?")
        log(f"{len(fused_scenes)} fused rooms: {coverage.epochs - coverage.unregistered} of "
            f"{coverage.epochs} revisits registered, {coverage.share:.0%} of their points "
            "labelled")
    scenes = load_scenes(datasets, model_cfg.class_ids, progress) + fused_scenes
    if not scenes:
        raise ValueError("the training datasets hold no scenes")
    log(f"{len(scenes)} scenes, {sum(len(s) for s in scenes)} epochs; "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters")
    pair_sample = replace(cfg.sample, epoch_counts=(2,), epoch_weights=(1.0,))
    ce_weights, info = None, {}          # power 0: plain cross entropy, no weight tensor
    if cfg.class_balance:
        balance = class_weights(scenes, len(model_cfg.class_ids), cfg.class_balance)
        info["class_weights"] = balance.tolist()
        log("class weights: " + ", ".join(f"{class_name(c)} {w:.2f}" for c, w
                                          in zip(model_cfg.class_ids, balance, strict=True)))
        ce_weights = torch.tensor(balance, dtype=torch.float32, device=device)
    model.train()
    bar = tqdm(total=cfg.iterations, initial=step, unit="it", desc="training",
               disable=not progress)
    running: dict[str, list[float]] = {}
    start = time.perf_counter()
    with (out / "log.jsonl").open("a") as log_file:
        while step < cfg.iterations:
            for group in opt.param_groups:
                group["lr"] = learning_rate(cfg, step)
            if revisit_scenes and step % cfg.revisit_every == 0:
                sample = make_sample(revisit_scenes, cfg.seed, step, model_cfg.voxel,
                                     pair_sample)
                parts = revisit_losses(model, sample, device)
                total = cfg.revisit_weight * parts["revisit"]
            else:
                sample = make_sample(scenes, cfg.seed, step, model_cfg.voxel, cfg.sample)
                parts = losses(model, sample, device, ce_weights)
                total = (parts["semantic"] + parts["instance"]
                         + cfg.contrast_weight * parts["contrast"])
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            step += 1
            for k, v in parts.items():
                running.setdefault(k, []).append(float(v.detach()))
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.iterations:
                means = {k: round(float(np.mean(v)), 4) for k, v in running.items()}
                bar.set_postfix(means)
                log_file.write(json.dumps({"step": step, "lr": learning_rate(cfg, step - 1),
                                           "voxels": len(sample.coords), **means,
                                           "seconds": round(time.perf_counter() - start, 1)})
                               + "\n")
                log_file.flush()
                running.clear()
            if step % cfg.checkpoint_every == 0 or step == cfg.iterations:
                tmp = ckpt_path.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                            "step": step, "config": model_cfg.to_dict(),
                            "train": _plain(asdict(cfg))}, tmp)
                tmp.replace(ckpt_path)             # never a half-written checkpoint
    bar.close()
    weights = out / "weights.pt"
    save_weights(weights, model, {"iterations": cfg.iterations, "train": _plain(asdict(cfg)),
                                  "datasets": [str(d) for d in datasets],
                                  "revisits": [str(r) for r in revisits],
                                  "fused": [[str(d), str(r)] for d, r in fused],
                                  "init": str(init) if init is not None else None,
                                  # how the start was made travels on with the fine-tuned file
                                  "init_info": start_from.info if start_from else None, **info})
    log(f"wrote {weights}")
    return weights


def _plain(value):
    """Dataclass dicts as JSON-like data (tuples become lists)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
