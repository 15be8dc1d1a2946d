"""Class of an object cluster from its shape and colour features.

A multinomial logistic regression over standardised cluster features (plus
their logarithms), trained on clusters of generated scans labelled with the
majority ground-truth class of their points. The model is a small JSON file
(``stseg_ros/data/geometric_classifier.json``, model card in the README).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stseg_ros.mapping.geometric import FEATURE_NAMES

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "data" / "geometric_classifier.json"
MODEL_FORMAT = "stseg_ros.geometric_classifier"


def expand(features: np.ndarray) -> np.ndarray:
    """Features plus log-sizes: proportions matter more than absolute differences."""
    f = np.atleast_2d(features)
    return np.hstack([f, np.log(np.clip(f[:, :3], 0.01, None)), np.log(np.clip(f[:, 6:7],
                                                                               1e-4, None))])


@dataclass
class ClusterClassifier:
    classes: np.ndarray          # NYU40 ids
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray             # (classes, features)
    intercept: np.ndarray

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        x = (expand(features) - self.mean) / self.scale
        logits = x @ self.coef.T + self.intercept
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)

    def predict(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(class ids, confidence) per row."""
        p = self.probabilities(features)
        k = p.argmax(1)
        return self.classes[k], p[np.arange(len(k)), k]

    def save(self, path: Path, card: dict) -> None:
        path.write_text(json.dumps({
            "format": MODEL_FORMAT, "features": list(FEATURE_NAMES), "card": card,
            "classes": self.classes.tolist(), "mean": self.mean.tolist(),
            "scale": self.scale.tolist(), "coef": np.round(self.coef, 6).tolist(),
            "intercept": np.round(self.intercept, 6).tolist()}, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path = DEFAULT_MODEL) -> ClusterClassifier:
        data = json.loads(Path(path).read_text())
        if data.get("format") != MODEL_FORMAT or data.get("features") != list(FEATURE_NAMES):
            raise ValueError(f"{path}: not a classifier for these cluster features")
        return cls(*(np.asarray(data[k], dtype=float) for k in
                     ("classes", "mean", "scale", "coef", "intercept")))

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, c: float = 1.0) -> ClusterClassifier:
        from sklearn.linear_model import LogisticRegression

        x = expand(features)
        mean, scale = x.mean(0), x.std(0) + 1e-6
        model = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
        model.fit((x - mean) / scale, labels)
        return cls(model.classes_.astype(float), mean, scale, model.coef_, model.intercept_)
