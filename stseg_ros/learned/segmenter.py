"""The learned segmenters: the 4D network behind the mapper's segmenter interface.

``learned`` segments the new scan jointly with the stored past epochs (the
last ``window`` registered ones): all epochs go through the network together,
instances are clustered over all of them, and each instance of the new scan
inherits the persistent id its past points carry in the object memory.
``learned-per-epoch`` runs the same network on the new scan alone and leaves
identities to the mapper's geometric association (the comparison baseline).

Weights trained with class-balanced cross entropy (``stseg train
--class-balance``) over-predict rare classes, walls called doors or cabinets
above all. The segmenter takes half of that bias back out (logit adjustment:
logits minus ``prior_correction`` x log class weight, with the weights stored
in the file), which keeps most of the gain on rare furniture while a wall
stays a wall.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import numpy as np
import torch

from stseg_ros.core.segmentation import Segmentation
from stseg_ros.data import LEARNED_WEIGHTS, data_file
from stseg_ros.learned.instances import (
    InstanceConfig,
    absorb_fragments,
    cluster_union,
    fill_unassigned,
    link_moved,
    reconcile,
    tracks_from_clusters,
)
from stseg_ros.learned.model import STRUCTURE, UNet4D, build_model, load_weights
from stseg_ros.learned.voxels import stack_epochs, voxel_centres, voxel_mode, voxelize
from stseg_ros.mapping.classifier import ClusterClassifier
from stseg_ros.mapping.geometric import (
    GeometricConfig,
    GeometricSplit,
    coverage,
    describe,
    estimate_normals,
    split_scan,
)

PRIOR_CORRECTION = 0.5      # share of the class-balancing bias taken back out


def shipped_weights() -> Path:
    return data_file(LEARNED_WEIGHTS)


class NetworkOutput:
    """Per-voxel class probabilities and embeddings of a set of epochs and, when
    given, the geometric split of each epoch carried onto the same voxels."""

    def __init__(self, model: UNet4D, clouds: list[tuple[np.ndarray, np.ndarray]],
                 device: str, logit_shift: torch.Tensor | None = None,
                 splits: list[GeometricSplit] | None = None) -> None:
        voxel = model.cfg.voxel
        self.epochs = [voxelize(xyz, rgb, voxel) for xyz, rgb in clouds]
        self.vox = stack_epochs(self.epochs)
        self.splits = splits or []
        with torch.inference_mode():
            logits, emb = model(torch.from_numpy(self.vox.coords).to(device),
                                torch.from_numpy(self.vox.feats).to(device))
        logits = logits.float()
        if logit_shift is not None:
            logits = logits - logit_shift
        self.probs = torch.softmax(logits, dim=1).cpu().numpy()
        self.emb = emb.float().cpu().numpy()
        self.epoch = self.vox.coords[:, 1]

    def geometric_voxels(self) -> tuple[np.ndarray, np.ndarray]:
        """Per voxel: whether most of its points are in a geometric object
        cluster, and that cluster (numbered apart per epoch; -1: none)."""
        total = len(self.vox.coords)
        is_object = np.zeros(total, bool)
        component = np.full(total, -1, np.int64)
        offset = 0
        for split, rows, point_row in zip(self.splits, self.vox.epoch_rows,
                                          self.vox.point_voxel, strict=True):
            local = point_row - (rows[0] if len(rows) else 0)
            mode = voxel_mode(local, split.clusters.astype(np.int64), len(rows))
            is_object[rows] = mode > 0
            component[rows] = np.where(mode > 0, mode + offset, -1)
            offset += int(split.clusters.max(initial=0)) + 1
        return is_object, component


class LearnedSegmenter:
    """Semantic instances from the 4D network (``joint``) or per epoch."""

    def __init__(self, weights: Path | None = None, device: str = "cpu",
                 backend: str = "torch", joint: bool = True, window: int = 10,
                 instances: InstanceConfig | None = None,
                 prior_correction: float = PRIOR_CORRECTION) -> None:
        path = Path(weights) if weights else shipped_weights()
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no weights for the learned segmenter (train "
                                    "with stseg train, or use --segmenter geometric)")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda: PyTorch sees no CUDA device here")
        checkpoint = load_weights(path)
        self.model = build_model(checkpoint, backend, device)
        self.info = checkpoint.info
        self.device, self.joint = device, joint
        self.window = window if joint else 0     # stored epochs read; per epoch: none
        self.name = "learned" if joint else "learned-per-epoch"
        self.cfg = instances or InstanceConfig()
        self.class_ids = np.asarray(self.model.cfg.class_ids)
        self.is_structure = np.isin(self.class_ids, STRUCTURE)    # per network class
        self.logit_shift = self._logit_shift(prior_correction)
        self.rules = GeometricConfig()      # normals, smallest segment, and the split
        self.classifier = ClusterClassifier.load() if self.cfg.classes == "classifier" else None
        self._split_cache: dict[bytes, GeometricSplit] = {}
        self.timings: dict[str, float] = {}

    def _splits(self, clouds: list[np.ndarray]) -> list[GeometricSplit] | None:
        """The geometric split of each cloud (None: network structure). A stored
        epoch comes back unchanged with every revisit, so its split is kept
        (by content) for as long as it is in the window."""
        if self.cfg.structure != "geometric":
            return None
        keys = [hashlib.blake2b(np.ascontiguousarray(xyz).tobytes(), digest_size=16).digest()
                for xyz in clouds]
        cache = {k: self._split_cache.get(k) or split_scan(xyz, self.rules)
                 for k, xyz in zip(keys, clouds, strict=True)}
        self._split_cache = cache
        return [cache[k] for k in keys]

    def _logit_shift(self, prior_correction: float) -> torch.Tensor | None:
        """``prior_correction`` x log of the class weights the network was trained
        with (None for plain cross entropy: nothing to correct)."""
        weights = self.info.get("class_weights")
        if weights is None or not prior_correction:
            return None
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != self.class_ids.shape or not (weights > 0).all():
            raise ValueError(f"the weights file lists {weights.size} class weights for "
                             f"{self.class_ids.size} classes, or one is not positive")
        shift = prior_correction * np.log(weights)
        return torch.tensor(shift, dtype=torch.float32, device=self.device)

    def segment(self, xyz: np.ndarray, rgb: np.ndarray, history=()) -> Segmentation:
        """Segment the scan ``xyz`` (map frame); ``history`` is the stored past
        epochs (``EpochPoints``, oldest first) for the joint model."""
        past = list(history)[-self.window:] if self.window else []
        start = time.perf_counter()
        clouds = [(p.xyz, p.rgb) for p in past] + [(xyz, rgb)]
        splits = self._splits([c for c, _ in clouds])
        structure_time = time.perf_counter() - start
        start = time.perf_counter()
        out = NetworkOutput(self.model, clouds, self.device, self.logit_shift, splits)
        network = time.perf_counter() - start
        start = time.perf_counter()
        track, (cls, confidence, whole, objectness) = self._tracks(out)
        now = len(past)
        point_voxel = out.vox.point_voxel[now]
        point_track = track[point_voxel]
        ids: dict[int, int] = {}            # track -> persistent id, from the past epochs
        if past:
            ids = reconcile(np.concatenate([track[pv] for pv in out.vox.point_voxel[:now]]),
                            np.concatenate([p.instance_id for p in past]),
                            np.unique(point_track[point_track >= 0]).tolist(),
                            self.cfg.min_votes)
        if out.splits:
            split: GeometricSplit = out.splits[now]
            structure, normals = split.structure, split.normals
        else:
            point_label = out.probs[point_voxel].argmax(1)
            structure = np.where(self.is_structure[point_label], self.class_ids[point_label],
                                 0).astype(np.int32)
            normals = estimate_normals(xyz, self.rules.normal_radius)
        segments, tracks = [], []
        for tid in np.unique(point_track[point_track >= 0]):
            members = np.flatnonzero(point_track == tid)
            if len(members) >= self.rules.min_object_points:
                segments.append(describe(xyz, rgb, normals, members))
                tracks.append(int(tid))
        class_ids, sure = cls[tracks].tolist(), confidence[tracks]
        if self.classifier is not None and segments:      # classes from the forest
            named, _, sure = self.classifier.object_class(np.stack([s.features for s in segments]))
            class_ids = named.tolist()
        self.timings = {"structure": structure_time, "network": network,
                        "instances": time.perf_counter() - start}
        return Segmentation(structure, segments, [int(c) for c in class_ids],
                            (sure * whole[tracks]).tolist(), normals,
                            [ids.get(t, 0) for t in tracks] if self.joint else None,
                            objectness=(objectness[tracks] * whole[tracks]).tolist(),
                            class_confidence=np.asarray(sure, float).tolist())

    def _tracks(self, out: NetworkOutput):
        """Track per voxel, and per track what ``_classes`` says of it."""
        coords = out.vox.coords[:, 2:]
        component = None
        if out.splits:
            is_object, component = out.geometric_voxels()
        else:
            is_object = ~self.is_structure[out.probs.argmax(1)]
        rows = np.flatnonzero(is_object)
        cluster = np.full(len(coords), -1, np.int64)
        centres = voxel_centres(coords[rows], self.model.cfg.voxel)
        object_probs = out.probs[rows][:, ~self.is_structure]
        cluster[rows] = cluster_union(out.emb[rows], centres, object_probs, self.cfg)
        if component is not None:
            object_class = np.where(self.is_structure[None, :], -1.0, out.probs).argmax(1)
            cluster = absorb_fragments(cluster, component, self.cfg.fragment_share,
                                       object_class)
        track = tracks_from_clusters(coords, out.epoch, cluster, self.cfg, component)
        track = fill_unassigned(coords, out.epoch, track, is_object, self.cfg.fill_reach)
        named = self._classes(out, track)
        if self.joint and len(out.epochs) > 1:
            track = link_moved(track, out.epoch, out.emb, named[0], len(out.epochs) - 1, coords,
                               self.cfg, colour=out.vox.feats[:, :3])
            named = self._classes(out, track)
        return track, named

    def _classes(self, out: NetworkOutput, track: np.ndarray):
        """Per track id: class (NYU40), its mean probability, coverage and mean
        objectness. The class is the object class with the highest summed
        probability over the track's voxels; coverage is 1 - exp(-voxels /
        ``score_voxels``), so that fragments rank below whole objects;
        objectness the mean probability of not being wall, floor or ceiling.
        A segment's score is its class probability times coverage, its
        objectness the mean objectness times coverage. On real scans, where
        the classes are mostly wrong, objectness ranks objects better
        (per-epoch class-agnostic AP25 on real ScanNet scans 0.29 by score,
        0.36 by objectness); on generated rooms the score ranks classes better."""
        n = int(track.max()) + 1 if (track >= 0).any() else 0
        tracked = track >= 0
        object_probs = out.probs.copy()
        object_probs[:, self.is_structure] = 0.0
        sums = np.zeros((n, out.probs.shape[1]))
        np.add.at(sums, track[tracked], object_probs[tracked])
        counts = np.bincount(track[tracked], minlength=n)
        best = sums.argmax(1) if n else np.zeros(0, np.int64)
        mean = sums[np.arange(n), best] / np.maximum(counts, 1)
        objectness = np.bincount(track[tracked], object_probs[tracked].sum(1), minlength=n)
        objectness /= np.maximum(counts, 1)
        return self.class_ids[best], mean, coverage(counts, self.cfg.score_voxels), objectness
