"""Class of an object cluster from its shape and colour features.

A random forest (100 trees, depth 12, balanced class weights) over the cluster
features plus their logarithms, trained with scikit-learn on clusters of
generated scans labelled with the majority ground-truth class of their points
(class 0: not an object). The trees are stored as plain arrays in
``stseg_ros/data/geometric_classifier.npz`` and evaluated with numpy, so no
pickled code is ever loaded; the model card is in the README.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stseg_ros.core.layout import load_npz
from stseg_ros.core.weights import NOT_LOADED, WeightsError
from stseg_ros.mapping.geometric import FEATURE_NAMES

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "geometric_classifier.npz"
MODEL_FORMAT = "stseg_ros.geometric_forest.v1"


def expand(features: np.ndarray) -> np.ndarray:
    """Features plus log-sizes: proportions matter more than absolute differences."""
    f = np.atleast_2d(features)
    return np.hstack([f, np.log(np.clip(f[:, :3], 0.01, None)), np.log(np.clip(f[:, 6:7],
                                                                               1e-4, None))])


@dataclass
class ClusterClassifier:
    """A forest of binary trees in flat arrays (all trees' nodes concatenated)."""

    classes: np.ndarray        # (C,) NYU40 ids, 0 = not an object
    roots: np.ndarray          # (T,) index of each tree's root node
    feature: np.ndarray        # (nodes,) split feature, -1 at leaves
    threshold: np.ndarray      # (nodes,) go left when feature <= threshold
    left: np.ndarray           # (nodes,) child indices (global)
    right: np.ndarray
    value: np.ndarray          # (nodes, C) class distribution at leaves

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        x = expand(features)
        rows = np.arange(len(x))
        total = np.zeros((len(x), len(self.classes)))
        for root in self.roots:
            node = np.full(len(x), root)
            while True:
                f = self.feature[node]
                inner = f >= 0
                if not inner.any():
                    break
                go_left = x[rows[inner], f[inner]] <= self.threshold[node[inner]]
                node[inner] = np.where(go_left, self.left[node[inner]], self.right[node[inner]])
            total += self.value[node]
        return total / len(self.roots)

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class ids, confidence) per row."""
        p = self.probabilities(features)
        k = p.argmax(1)
        return self.classes[k].astype(int), p[np.arange(len(k)), k]

    def object_class(self, features: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(most likely object class, objectness = 1 - P(not an object), and that
        class's probability) per row.
        On real scans the forest's classes are mostly wrong but its objectness
        still ranks clusters: dropping the clusters it calls "not an object"
        and ranking the rest by class confidence lost real ScanNet objects
        (class-agnostic AP25 0.24, against 0.35 with every cluster kept and
        ranked by objectness times coverage)."""
        p = self.probabilities(features)
        is_object = self.classes != 0
        best = np.flatnonzero(is_object)[p[:, is_object].argmax(1)]
        return (self.classes[best].astype(int), 1.0 - p[:, ~is_object].sum(1),
                p[np.arange(len(p)), best])

    def save(self, path: Path) -> None:
        np.savez_compressed(path, format=np.array(MODEL_FORMAT),
                            features=np.array(FEATURE_NAMES), classes=self.classes,
                            roots=self.roots, feature=self.feature.astype(np.int16),
                            threshold=self.threshold.astype(np.float32),
                            left=self.left.astype(np.int32), right=self.right.astype(np.int32),
                            value=self.value.astype(np.float16))

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL) -> ClusterClassifier:
        """The forest of a file ``save`` wrote; anything else, or arrays that do
        not form trees over these features, is a WeightsError naming the file."""
        names = ("format", "features", "classes", "roots", "feature", "threshold", "left",
                 "right", "value")
        if Path(path).is_dir():
            raise WeightsError(f"{path}: a folder, not a classifier file")
        if not Path(path).exists():
            raise FileNotFoundError(f"{path}: no classifier file")
        try:
            a = load_npz(path, names, WeightsError)
        except WeightsError as err:
            raise WeightsError(f"{err}; {NOT_LOADED}") from None
        missing = [n for n in names if n not in a]
        if missing:
            raise WeightsError(f"{path}: {NOT_LOADED} (no {', '.join(missing)})")
        if str(a["format"]) != MODEL_FORMAT or a["features"].tolist() != list(FEATURE_NAMES):
            raise WeightsError(f"{path}: not a classifier for these cluster features "
                               f"(format {MODEL_FORMAT}); it was not loaded")
        return cls._checked(path, a)

    @classmethod
    def _checked(cls, path: Path, a: dict[str, np.ndarray]) -> ClusterClassifier:
        """The forest if its arrays are consistent trees (so evaluating it cannot
        index out of range or loop)."""
        def bad(what: str) -> WeightsError:
            return WeightsError(f"{path}: {what}; the classifier was not loaded")

        for n in ("classes", "roots", "feature", "threshold", "left", "right", "value"):
            if a[n].dtype.kind not in ("fiu" if n in ("threshold", "value") else "iu"):
                raise bad(f"'{n}' holds {a[n].dtype}, expected numbers")
        nodes = len(a["feature"])
        for n in ("roots", "feature", "threshold", "left", "right", "classes"):
            if a[n].ndim != 1:
                raise bad(f"'{n}' has shape {a[n].shape}, expected one dimension")
        if not (len(a["threshold"]) == len(a["left"]) == len(a["right"]) == nodes):
            raise bad("'feature', 'threshold', 'left' and 'right' differ in length")
        if a["value"].shape != (nodes, len(a["classes"])) or not len(a["roots"]):
            raise bad(f"'value' has shape {a['value'].shape}, expected ({nodes}, "
                      f"{len(a['classes'])}), and there must be a tree")
        feature, left, right = (a[n].astype(np.int64) for n in ("feature", "left", "right"))
        inner = feature >= 0
        width = expand(np.zeros(len(FEATURE_NAMES))).shape[1]
        index = np.arange(nodes)
        # trees as save writes them: children after their parent, in range
        if ((a["roots"] < 0) | (a["roots"] >= nodes)).any() or (feature[inner] >= width).any() \
                or (left[inner] <= index[inner]).any() or (right[inner] <= index[inner]).any() \
                or (left[inner] >= nodes).any() or (right[inner] >= nodes).any():
            raise bad("its trees point outside their arrays")
        return cls(a["classes"], a["roots"].astype(np.int64), feature,
                   a["threshold"].astype(np.float64), left, right,
                   a["value"].astype(np.float64))

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, trees: int = 100, depth: int = 12,
            seed: int = 0) -> ClusterClassifier:
        from sklearn.ensemble import RandomForestClassifier

        forest = RandomForestClassifier(trees, max_depth=depth, class_weight="balanced",
                                        random_state=seed).fit(expand(features), labels)
        roots, feature, threshold, left, right, value = [], [], [], [], [], []
        offset = 0
        for est in forest.estimators_:
            t = est.tree_
            roots.append(offset)
            leaf = t.children_left < 0
            feature.append(np.where(leaf, -1, t.feature))
            threshold.append(t.threshold)
            left.append(np.where(leaf, -1, t.children_left + offset))
            right.append(np.where(leaf, -1, t.children_right + offset))
            v = t.value[:, 0, :]
            value.append(v / np.maximum(v.sum(1, keepdims=True), 1e-12))
            offset += t.node_count
        return cls(forest.classes_.astype(np.int64), np.array(roots), np.concatenate(feature),
                   np.concatenate(threshold), np.concatenate(left), np.concatenate(right),
                   np.concatenate(value))
