"""Label images as a robot's 2D segmenter would publish them, from the
renderer's per-pixel ground truth, with the errors such segmenters make.

The robot speaks its own label set (``ROBOT_CLASSES``: its ids and names,
most mapped to NYU40, one class of its own), which the generator writes as
``label_set.yaml`` beside the dataset. Each variant of ``VARIANTS`` is one
topic, ``/camera/labels/<variant>/image_raw`` (mono16, stamped as the colour
image), so one rendering serves every comparison:

- ``bleed``: object masks spill a few pixels over their edges onto what is
  behind them, as mask heads do at low resolution;
- ``missed``: objects covering few pixels in a view get no label;
- ``confused``: some objects are consistently called a similar class;
- ``flicker``: per view, some objects get another class for that view;
- ``typical``: all four at once, at the strengths above.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import yaml
from scipy import ndimage

from stseg_ros.core.classes import class_id
from stseg_ros.mapping.labels import LABEL_SET_FORMAT

# robot id -> (its name, the NYU40 class; None: a class of its own)
ROBOT_CLASSES: dict[int, tuple[str, str | None]] = {
    1: ("wall", "wall"), 2: ("floor", "floor"), 3: ("ceiling", "ceiling"),
    4: ("chair", "chair"), 5: ("dining table", "table"), 6: ("desk", "desk"),
    7: ("couch", "sofa"), 8: ("bed", "bed"), 9: ("cupboard", "cabinet"),
    10: ("bookcase", "bookshelf"), 11: ("floor lamp", "lamp"), 12: ("tv", "television"),
    13: ("cardboard box", "box"), 14: ("cushion", "pillow"), 15: ("potted plant", None),
    16: ("nightstand", "night stand"), 17: ("chest of drawers", "dresser"),
    18: ("door", "door"), 19: ("window", "window"),
}
_ROBOT_ID = {class_id(nyu): rid for rid, (_, nyu) in ROBOT_CLASSES.items() if nyu}
_ROBOT_ID[class_id("otherprop")] = 15          # the generator's plants are otherprop
OBJECTS = [rid for rid in ROBOT_CLASSES if rid > 3 and rid not in (18, 19)]
# what a 2D segmenter takes each object class for when it errs
CONFUSABLE = {4: 7, 5: 6, 6: 5, 7: 4, 8: 7, 9: 17, 10: 9, 11: 15, 12: 9, 13: 9, 14: 7,
              15: 11, 16: 9, 17: 9}


@dataclass(frozen=True)
class LabelErrors:
    bleed_px: int = 0          # object labels spill this many pixels over their edges
    miss_pixels: int = 0       # objects covering fewer pixels in a view are not labelled
    confuse: float = 0.0       # share of objects always called a confusable class
    flicker: float = 0.0       # per view, chance an object gets another class


VARIANTS = {
    "clean": LabelErrors(),
    "bleed": LabelErrors(bleed_px=6),
    "missed": LabelErrors(miss_pixels=3000),
    "confused": LabelErrors(confuse=0.25),
    "flicker": LabelErrors(flicker=0.2),
    "typical": LabelErrors(bleed_px=6, miss_pixels=3000, confuse=0.25, flicker=0.2),
}


def label_topic(variant: str) -> str:
    return f"/camera/labels/{variant}/image_raw"


def label_set_yaml() -> str:
    """The robot's label set, in the format ``LabelSet.load`` reads."""
    classes = {rid: ({"name": name, "nyu40": nyu} if nyu else {"name": name})
               for rid, (name, nyu) in ROBOT_CLASSES.items()}
    return yaml.safe_dump({"format": LABEL_SET_FORMAT, "classes": classes}, sort_keys=False)


def check_variants(names: tuple[str, ...]) -> None:
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"--labels {unknown[0]!r}: no such variant; variants: "
                         f"{', '.join(VARIANTS)}")


def robot_labels(semantic: np.ndarray, instance: np.ndarray, errors: LabelErrors,
                 object_key: tuple[int, ...], view_rng: np.random.Generator) -> np.ndarray:
    """One label image (uint16 robot ids, 0: none) of a rendered view.

    ``object_key`` seeds each object's fixed confusion (the same in every view
    and revisit of one scene); ``view_rng`` draws this view's flicker."""
    lookup = np.zeros(int(max(semantic.max(), 40)) + 1, np.uint16)
    for nyu, rid in _ROBOT_ID.items():
        lookup[nyu] = rid
    out = lookup[semantic]
    objects = np.unique(instance[instance > 0])
    for inst in objects:
        mask = instance == inst
        if errors.miss_pixels and mask.sum() < errors.miss_pixels:
            out[mask] = 0
            continue
        rid = int(np.bincount(out[mask]).argmax())
        if rid not in CONFUSABLE:
            continue
        fixed = np.random.default_rng([*object_key, int(inst), 13]).random()
        if fixed < errors.confuse:
            out[mask] = CONFUSABLE[rid]
        elif errors.flicker and view_rng.random() < errors.flicker:
            out[mask] = view_rng.choice([o for o in OBJECTS if o != rid])
    if errors.bleed_px:
        thing = np.where(instance > 0, out, 0).astype(np.uint16)
        size = 2 * errors.bleed_px + 1
        grown = ndimage.grey_dilation(thing, size=(size, size))
        spill = (instance == 0) & (grown > 0)
        out[spill] = grown[spill]
    return out
