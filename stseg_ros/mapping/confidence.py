"""How likely a change event is to be real, from the evidence of its object.

Most false change events on generated rooms fused from bags are not about
real objects at all: a fragment of a wall or a sliver of a sofa is segmented
in one revisit and not the next, and becomes an ``added`` or a ``removed``
(README, "Change events"). Such fragments are small and their segmenter is
unsure they are whole objects, so an event's confidence is a logistic model,
one per kind of event, of the object's size (the volume of its box, which
unlike a point count does not depend on how densely a scan samples it),
objectness, class score, and how many earlier revisits saw it (an object
seen once and gone is mostly a fragment): the segment that appeared or
moved, or for ``removed`` the object as last seen. The models are fitted
(``fit``) on the events of generated rooms scored by ``stseg eval`` and ship
as package data, with the rooms they came from; ``stseg calibrate-changes``
refits them. A confidence of 0.8 means that about 8 in 10 such events were
real on those rooms.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from stseg_ros.core.records import ObjectRecord

FORMAT = "stseg_ros.change_confidence"
KINDS = ("added", "removed", "moved")
FEATURES = ("bias", "log10_volume_m3", "objectness", "score", "log2_sightings")
MIN_VOLUME = 1e-4      # m3; a flat fragment's box is not smaller than this


class ConfidenceModelError(ValueError):
    """A change-confidence file that cannot be used; the message names it."""


def evidence(record: ObjectRecord, sightings: int) -> np.ndarray:
    """The features of an object's evidence (``FEATURES``); ``sightings``: the
    earlier epochs that observed it. A segmenter without objectness
    (geometric) stands in its class score."""
    objectness = record.score if record.objectness is None else record.objectness
    volume = max(float(np.prod(record.extents)), MIN_VOLUME)
    return np.array([1.0, math.log10(volume), objectness, record.score,
                     math.log2(1 + sightings)])


@dataclass
class ConfidenceModel:
    """One logistic model per event kind; ``about``: where it was fitted, and how well."""

    weights: dict[str, list[float]]
    about: dict = field(default_factory=dict)

    def confidence(self, kind: str, record: ObjectRecord, sightings: int) -> float:
        """The chance that a ``kind`` event about ``record``, an object seen in
        ``sightings`` earlier epochs, is real (1 for kinds the model does not know)."""
        w = self.weights.get(kind)
        if w is None:
            return 1.0
        return float(1.0 / (1.0 + math.exp(-float(np.dot(w, evidence(record, sightings))))))

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "features": list(FEATURES),
                           "weights": self.weights, "about": self.about}, indent=1) + "\n"

    @classmethod
    def load(cls, path: str | Path | None = None) -> ConfidenceModel:
        """A model file, or the shipped one (``path`` None or empty)."""
        if not path:
            text = resources.files("stseg_ros.data").joinpath(
                "change_confidence.json").read_text()
            where = "the shipped change_confidence.json"
        else:
            where = str(path)
            try:
                text = Path(path).read_text()
            except OSError as err:
                raise ConfidenceModelError(f"{where}: cannot read ({err.strerror})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfidenceModelError(f"{where}: not JSON ({err})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ConfidenceModelError(f"{where}: not a change-confidence file (expected "
                                       f"format: {FORMAT})")
        if data.get("features") != list(FEATURES):
            raise ConfidenceModelError(f"{where}: features {data.get('features')} are not "
                                       f"{list(FEATURES)}")
        weights = data.get("weights")
        if not isinstance(weights, dict) or not all(
                k in KINDS and isinstance(w, list) and len(w) == len(FEATURES)
                and all(isinstance(x, int | float) and math.isfinite(x) for x in w)
                for k, w in weights.items()):
            raise ConfidenceModelError(f"{where}: weights must map {', '.join(KINDS)} to "
                                       f"{len(FEATURES)} finite numbers each")
        return cls({k: [float(x) for x in w] for k, w in weights.items()},
                   data.get("about", {}))


def fit(samples: dict[str, list[tuple[ObjectRecord, int, bool]]], l2: float = 1.0,
        about: dict | None = None) -> ConfidenceModel:
    """Logistic regression per kind (Newton's method with an L2 penalty on all
    but the bias, so a few dozen events give a smooth model); a kind without
    both real and false events gets none and keeps confidence 1."""
    weights = {}
    for kind, events in samples.items():
        labels = np.array([real for *_, real in events], dtype=float)
        if len(events) < 4 or labels.min() == labels.max():
            continue
        x = np.stack([evidence(r, n) for r, n, _ in events])
        w = np.zeros(x.shape[1])
        penalty = np.eye(x.shape[1]) * l2
        penalty[0, 0] = 0.0
        for _ in range(50):
            p = 1.0 / (1.0 + np.exp(-x @ w))
            grad = x.T @ (p - labels) + penalty @ w
            hess = x.T @ (x * (p * (1 - p))[:, None]) + penalty + np.eye(len(w)) * 1e-9
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        weights[kind] = [round(float(v), 5) for v in w]
    return ConfidenceModel(weights, about or {})
