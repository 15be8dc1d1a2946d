"""Training losses of the 4D network.

- ``discriminative_loss`` (SSEN; De Brabandere et al.): voxel embeddings are
  pulled to their instance's mean (hinge at ``pull``) and instance means are
  pushed apart (hinge at ``2 * push``). Instances are 4D: one object over all
  epochs of the sample is one instance, so this already asks for identity
  across revisits. Each instance's pull term is divided by ``|E_i|^p``
  (p = 1 weights every instance alike whatever its size, SSEN's best).
- ``semantic_loss``: cross entropy, optionally weighted per class
  (``stseg train --class-balance``): walls and floors are most of the voxels
  of a room and outvote the furniture standing against them.
- ``cross_time_contrast`` (ReScene4D, spatio-temporal contrast): the mean
  embedding of an object in one epoch must be closer to the same object in
  another epoch than to any other object of the sample (supervised InfoNCE).
"""

from __future__ import annotations

import torch
from torch.nn import functional


def discriminative_loss(emb: torch.Tensor, instance: torch.Tensor, pull: float = 0.5,
                        push: float = 1.5, p: float = 1.0, reg: float = 0.001) -> torch.Tensor:
    """``instance`` is (V,) with 0 for voxels of no instance (ignored)."""
    keep = instance > 0
    if not keep.any():
        return emb.sum() * 0.0
    emb, instance = emb[keep], instance[keep]
    ids, inverse, counts = torch.unique(instance, return_inverse=True, return_counts=True)
    n = len(ids)
    means = emb.new_zeros((n, emb.shape[1])).index_add_(0, inverse, emb) / counts[:, None]
    dist = (emb - means[inverse]).norm(dim=1)
    hinge = torch.relu(dist - pull) ** 2
    per_instance = emb.new_zeros(n).index_add_(0, inverse, hinge) / counts.float() ** p
    loss_pull = per_instance.mean()
    loss_push = emb.new_zeros(())
    if n > 1:
        gap = torch.cdist(means, means)
        off = ~torch.eye(n, dtype=torch.bool, device=emb.device)
        loss_push = (torch.relu(2 * push - gap[off]) ** 2).mean()
    return loss_pull + loss_push + reg * means.norm(dim=1).mean()


def cross_time_contrast(emb: torch.Tensor, instance: torch.Tensor, epoch: torch.Tensor,
                        temperature: float = 0.1) -> torch.Tensor:
    """Supervised InfoNCE over per-(object, epoch) mean embeddings; anchors are the
    pairs whose object is also seen in another epoch of the sample."""
    keep = instance > 0
    if not keep.any():
        return emb.sum() * 0.0
    emb, instance, epoch = emb[keep], instance[keep], epoch[keep]
    key = instance * 256 + epoch
    keys, inverse = torch.unique(key, return_inverse=True)
    pooled = emb.new_zeros((len(keys), emb.shape[1])).index_add_(0, inverse, emb)
    pooled = functional.normalize(pooled, dim=1)
    owner = keys // 256
    same = owner[:, None] == owner[None, :]
    eye = torch.eye(len(keys), dtype=torch.bool, device=emb.device)
    positive = same & ~eye
    anchors = positive.any(dim=1)
    if not anchors.any():
        return emb.sum() * 0.0
    logits = (pooled @ pooled.T) / temperature
    logits = logits.masked_fill(eye, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos_log_prob = torch.where(positive, log_prob, torch.zeros_like(log_prob)).sum(1)
    return -(pos_log_prob[anchors] / positive[anchors].sum(1)).mean()


def semantic_loss(logits: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None = None) -> torch.Tensor:
    """Cross entropy over voxels with a known class (target -1 is ignored),
    optionally with a weight per class (``class_weights``)."""
    if not (target >= 0).any():
        return logits.sum() * 0.0
    return functional.cross_entropy(logits, target, weight=weight, ignore_index=-1)
