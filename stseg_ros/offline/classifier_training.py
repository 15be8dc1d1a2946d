"""Train the geometric segmenter's cluster classifier on generated scans, and
optionally on labelled ones (``stseg import``).

Each epoch is levelled and segmented exactly as at run time; a cluster is
labelled with the class of the ground-truth instance covering most of it
(at least 60 %), or 0 ("not an object") when structure or no single object
dominates, so the classifier also learns to drop junk clusters. Imported
scans give walls, floors and ceilings instance ids; they count as structure.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stseg_ros.benchmark.generate import GenerateConfig, generate_dataset
from stseg_ros.core.layout import open_dataset, read_cloud, read_epoch_result
from stseg_ros.core.pointcloud import transform_points
from stseg_ros.mapping.classifier import ClusterClassifier
from stseg_ros.mapping.geometric import CEILING, FLOOR, WALL, GeometricConfig, describe, split_scan
from stseg_ros.mapping.gravity import level_scan


def labelled_clusters(dataset: Path, cfg: GeometricConfig | None = None):
    """(features, labels) of every cluster of every epoch of a dataset."""
    cfg = cfg or GeometricConfig()
    feats, labels = [], []
    index = open_dataset(dataset)
    for scene in index.scenes:
        for epoch in index.epochs(scene):
            xyz, rgb = read_cloud(dataset / scene / epoch)
            truth = read_epoch_result(dataset / scene / epoch)
            xyz = transform_points(level_scan(xyz).levelled_from_input, xyz)   # as stseg run
            split = split_scan(xyz, cfg)
            for c in np.unique(split.clusters[split.clusters > 0]):
                members = np.flatnonzero(split.clusters == c)
                ids, counts = np.unique(truth.instance_id[members], return_counts=True)
                top = int(ids[counts.argmax()])
                share = counts.max() / len(members)
                label = truth.instances[top].class_id if top and share >= 0.6 else 0
                label = 0 if label in (WALL, FLOOR, CEILING) else label
                feats.append(describe(xyz, rgb, split.normals, members).features)
                labels.append(label)
    return np.array(feats), np.array(labels)


def train_classifier(seeds: range, revisits: int = 2, progress: bool = True,
                     held_out: range | None = None, labelled: list[Path] = (),
                     labelled_weight: int = 1):
    """Generate fast scenes for ``seeds`` and fit the classifier, with the clusters
    of the ``labelled`` datasets counted ``labelled_weight`` times; returns it and
    the figures of its model card (cluster counts, training and held-out
    accuracy)."""
    if labelled_weight < 1:
        raise ValueError(f"the labelled weight must be 1 or more, got {labelled_weight}")
    extra = [labelled_clusters(Path(d)) for d in labelled]      # a wrong path fails first
    x, y = _clusters_of(tqdm(seeds, desc="training scenes", unit="scene",
                             disable=not progress), revisits)
    generated = len(y)
    for xl, yl in extra:
        x = np.concatenate([x, *[xl] * labelled_weight])
        y = np.concatenate([y, *[yl] * labelled_weight])
    model = ClusterClassifier.fit(x, y)
    card = {"training_seeds": f"{seeds.start}-{seeds.stop - 1}", "clusters": len(y),
            "generated_clusters": generated,
            "labelled": [str(d) for d in labelled],
            "labelled_clusters": sum(len(yl) for _, yl in extra),
            "labelled_weight": labelled_weight,
            "train_accuracy": round(float((model.predict(x)[0] == y).mean()), 4),
            "per_class_clusters": {int(c): int((y == c).sum()) for c in np.unique(y)}}
    if held_out is not None:
        xv, yv = _clusters_of(held_out, revisits)
        card["held_out_seeds"] = f"{held_out.start}-{held_out.stop - 1}"
        card["held_out_accuracy"] = round(float((model.predict(xv)[0] == yv).mean()), 4)
    return model, card


def _clusters_of(seeds: range, revisits: int):
    feats, labels = [], []
    with tempfile.TemporaryDirectory(prefix="stseg-train-") as tmp:
        for seed in seeds:
            out = Path(tmp) / str(seed)
            generate_dataset(out, GenerateConfig(seed=seed, revisits=revisits, frames=0),
                             progress=False)
            f, y = labelled_clusters(out)
            feats.append(f)
            labels.append(y)
    return np.concatenate(feats), np.concatenate(labels)
