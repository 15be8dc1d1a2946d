"""The robot's own 2D labels: per-pixel class ids from its image segmenter,
fused into per-point class evidence that names the objects.

Most mapping systems in the field take a 2D segmenter's label image
(Hydra, Khronos, panoptic_mapping). Here each label image is matched to the
fused depth frame of the same stamp, its labelled pixels are back-projected
with that frame's depth and pose, and their votes are gathered per voxel
(``LabelVotes``). After fusion each surface point carries the label most
votes of its voxel gave and that label's share of them. A segment whose
points mostly carry one label takes it as its class (``apply_labels``), in
the robot's own words: the label set (``LabelSet``) maps the robot's ids to
its class names and, where it says so, to the NYU40 class the metrics score;
a class of its own is scored as NYU40 ``otherprop``.

Label images arrive late (a 2D segmenter takes longer than the camera), so
frames wait for their labels and labels for their frames, a bounded number
of each; what never found a partner is counted, not dropped silently.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import yaml
from scipy.spatial import cKDTree

from stseg_ros.core.camera import Intrinsics, backproject
from stseg_ros.core.classes import NYU40_CLASSES, class_id, class_name
from stseg_ros.core.fields import setting
from stseg_ros.core.pointcloud import voxel_keys
from stseg_ros.core.segmentation import Segmentation
from stseg_ros.mapping.geometric import (
    GeometricConfig,
    VoxelGrid,
    connected,
    describe,
    estimate_normals,
)

log = logging.getLogger(__name__)

LABEL_SET_FORMAT = "stseg_ros.label_set"
OWN_CLASS = class_id("otherprop")      # what a class of the robot's own is scored as
STRUCTURE = {class_id(n) for n in ("wall", "floor", "ceiling")}
PENDING = 90                           # frames (or label images) waiting for a partner
NEW_OBJECT_SCORE = 0.3                 # ranks an object only the labels found below the rest


@dataclass(frozen=True)
class LabelConfig:
    topic: str = ""            # label image topic (per-pixel class ids); empty: none
    label_set: str = ""        # YAML file of the robot's classes; empty: the ids are NYU40 ids
    voxel: float = setting(0.04, above=0)   # m, cells the pixels' votes are gathered in
    pixel_stride: int = setting(  # every k-th pixel (each way) of a label image votes (4: 2 cm
        4, low=1)                 # apart at 3 m for 640x480; lower it for smaller images)
    max_gap_s: float = setting(0.02, low=0)  # s, a label image this close to a frame labels it
    id_divisor: int = setting(  # panoptic images (id = class * this + instance): the class is
        1, low=1)               # id // this; 1: the ids are class ids
    min_share: float = setting(  # a point's label counts if this share of its voxel's
        0.5, low=0, high=1)      # votes agree
    min_labelled: float = setting(  # a segment is corrected only if this share of its
        0.3, low=0, high=1)         # points carry a label
    structure_share: float = setting(  # a segment labelled this much wall/floor/ceiling
        0.7, low=0, high=1)            # is structure, not an object
    split_share: float = setting(  # a segment with two object labels this strong each
        0.25, low=0, high=1)       # is split by label
    min_points: int = setting(50, low=1)   # points a label needs in a segment to split it
    min_new_points: int = setting(  # labelled points no segment took, this many connected,
        200, low=1)                 # become an object the segmenter missed
    keep_confident: float = setting(  # a segmenter class surer than this stays against the
        1.0, low=0, high=1)           # labels (in the robot's name for it); 1: labels name all


class LabelSetError(ValueError):
    """A label-set file that cannot be used; the message names the file."""


@dataclass(frozen=True)
class LabelClass:
    name: str                  # the robot's name of the class
    nyu40: int                 # the NYU40 class it is scored as (OWN_CLASS for its own)
    own: bool = False          # a class of the robot's own (no NYU40 class given)


@dataclass(frozen=True)
class LabelSet:
    """The robot's label ids -> its classes. Id 0 is "no label" in any set."""

    classes: dict[int, LabelClass] = field(default_factory=dict)
    source: str = "NYU40"

    @classmethod
    def nyu40(cls) -> LabelSet:
        """Label images that hold NYU40 ids (ScanNet-trained segmenters)."""
        return cls({cid: LabelClass(name, cid) for cid, name in NYU40_CLASSES.items()})

    @classmethod
    def load(cls, path: str | Path) -> LabelSet:
        """A label-set file::

            format: stseg_ros.label_set
            classes:
              3: {name: office chair, nyu40: chair}   # NYU40 by name or id
              14: {name: potted plant}                # its own class
              7: couch                                # a NYU40 name alone
        """
        path = Path(path).expanduser()
        try:
            data = yaml.safe_load(path.read_text())
        except OSError as err:
            raise LabelSetError(f"{path}: cannot read the label set ({err.strerror})") from None
        except yaml.YAMLError as err:
            raise LabelSetError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(data, dict) or data.get("format") != LABEL_SET_FORMAT:
            raise LabelSetError(f"{path}: not a label set (expected 'format: "
                                f"{LABEL_SET_FORMAT}' and 'classes:')")
        raw = data.get("classes")
        if not isinstance(raw, dict) or not raw:
            raise LabelSetError(f"{path}: 'classes' must map label ids to classes")
        classes: dict[int, LabelClass] = {}
        for key, value in raw.items():
            try:
                label = int(key)
            except (TypeError, ValueError):
                raise LabelSetError(f"{path}: label id {key!r} is not an integer") from None
            if not 1 <= label <= 65535:
                raise LabelSetError(f"{path}: label id {label} outside 1..65535 (0 means "
                                    "no label)")
            classes[label] = _entry(value, label, path)
        return cls(classes, str(path))

    @classmethod
    def from_config(cls, cfg: LabelConfig) -> LabelSet:
        return cls.load(cfg.label_set) if cfg.label_set else cls.nyu40()

    def get(self, label: int) -> LabelClass | None:
        return self.classes.get(int(label))

    def name_of(self, nyu40: int) -> str:
        """The robot's name for a NYU40 class (its first class scored as it), or
        the NYU40 name where it has none."""
        return next((c.name for c in self.classes.values() if c.nyu40 == nyu40 and not c.own),
                    class_name(nyu40))


def _entry(value, label: int, path: Path) -> LabelClass:
    if isinstance(value, str):
        value = {"name": value, "nyu40": value}
    if not isinstance(value, dict) or not str(value.get("name", "")).strip():
        raise LabelSetError(f"{path}: class {label}: expected a name or {{name: ..., "
                            "nyu40: ...}}")
    name = str(value["name"]).strip()
    nyu = value.get("nyu40")
    if nyu is None:
        return LabelClass(name, OWN_CLASS, own=True)
    if isinstance(nyu, int):
        if nyu not in NYU40_CLASSES:
            raise LabelSetError(f"{path}: class {label} ({name}): NYU40 id {nyu} outside 1..40")
        return LabelClass(name, nyu)
    try:
        return LabelClass(name, class_id(str(nyu)))
    except ValueError:
        raise LabelSetError(f"{path}: class {label} ({name}): {nyu!r} is not a NYU40 class "
                            "name (give nyu40: NAME or ID, or leave it out for a class of "
                            "its own)") from None


@dataclass
class LabelStats:
    labelled: int = 0          # fused frames that got a label image
    unlabelled: int = 0        # fused frames whose label image never came
    unmatched: int = 0         # label images no fused frame had the stamp of
    not_fused: int = 0         # label images of frames left out on purpose (thinned)
    refused: dict[str, int] = field(default_factory=dict)   # unusable label images, by reason

    def refuse(self, reason: str) -> None:
        if reason not in self.refused:
            log.warning("label image skipped: %s (further ones only counted)", reason)
        self.refused[reason] = self.refused.get(reason, 0) + 1

    def note(self) -> str:
        out = f"{self.labelled} frames labelled"
        extra = [f"{n} {what}" for n, what in ((self.unlabelled, "without a label image"),
                                               (self.unmatched, "label images without a frame"))
                 if n]
        extra += [f"{n} refused ({why})" for why, n in self.refused.items()]
        if self.not_fused:
            extra.append(f"{self.not_fused} of frames not fused (thinned)")
        return out + (f" ({'; '.join(extra)})" if extra else "")


@dataclass
class _View:
    stamp_ns: int
    xyz: np.ndarray            # (M, 3) odom-frame points of the sampled pixels
    pixels: tuple[np.ndarray, np.ndarray]   # their (v, u) in the depth image
    shape: tuple[int, int]     # depth image (H, W)


class LabelVotes:
    """Per-voxel label votes of a revisit, from frames and their label images."""

    def __init__(self, cfg: LabelConfig = LabelConfig()) -> None:
        self.cfg = cfg
        self.stats = LabelStats()
        self._views: deque[_View] = deque()
        self._labels: deque[tuple[int, np.ndarray]] = deque()
        self._keys: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []
        self._table = (np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0, np.int64))

    # --- input ------------------------------------------------------------------------

    def add_view(self, stamp_ns: int, depth: np.ndarray, intr: Intrinsics,
                 odom_from_camera: np.ndarray, depth_max: float) -> None:
        """A fused frame: its sampled depth pixels wait for their label image."""
        xyz, flat = backproject(depth, intr, odom_from_camera, self.cfg.pixel_stride,
                                depth_max)
        view = _View(int(stamp_ns), xyz.astype(np.float32), divmod(flat, intr.width),
                     depth.shape[:2])
        label = self._take(self._labels, view.stamp_ns, lambda item: item[0])
        if label is not None:
            self._vote(view, label[1])
            return
        self._views.append(view)
        while len(self._views) > PENDING:
            self._views.popleft()
            self.stats.unlabelled += 1

    def add_labels(self, stamp_ns: int, labels: np.ndarray) -> None:
        """A label image (H, W) of the robot's ids, 0 = no label."""
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.size == 0:
            self.stats.refuse(f"expected a one-channel image, got shape {labels.shape}")
            return
        view = self._take(self._views, int(stamp_ns), lambda item: item.stamp_ns)
        if view is not None:
            self._vote(view, labels)
            return
        self._labels.append((int(stamp_ns), labels))
        while len(self._labels) > PENDING:
            self._labels.popleft()
            self.stats.unmatched += 1

    def _take(self, waiting: deque, stamp: int, stamp_of):
        gap = int(self.cfg.max_gap_s * 1e9)
        best = min(waiting, key=lambda item: abs(stamp_of(item) - stamp), default=None)
        if best is None or abs(stamp_of(best) - stamp) > gap:
            return None
        waiting.remove(best)
        return best

    def _vote(self, view: _View, labels: np.ndarray) -> None:
        h, w = view.shape
        lh, lw = labels.shape
        if lh * w != lw * h:          # a label image of other proportions is another camera
            self.stats.refuse(f"label image {lw}x{lh} does not match depth {w}x{h}")
            return
        v, u = view.pixels           # a smaller label image (a segmenter's input size) scales
        ids = labels[(v * lh) // h, (u * lw) // w].astype(np.int32) // self.cfg.id_divisor
        keep = ids > 0
        self.stats.labelled += 1
        if keep.any():
            self._keys.append(voxel_keys(view.xyz[keep], self.cfg.voxel))
            self._ids.append(ids[keep])
        if len(self._keys) >= 16:
            self._compact()

    def _compact(self) -> None:
        """Fold the gathered votes into (voxel, label, count) rows."""
        keys, ids, counts = self._table
        keys = np.concatenate([keys, *self._keys])
        ids = np.concatenate([ids, *self._ids])
        counts = np.concatenate([counts, np.ones(len(keys) - len(counts), np.int64)])
        self._keys, self._ids = [], []
        if not len(keys):
            return
        order = np.lexsort((ids, keys))
        keys, ids, counts = keys[order], ids[order], counts[order]
        start = np.r_[True, (keys[1:] != keys[:-1]) | (ids[1:] != ids[:-1])]
        group = np.cumsum(start) - 1
        self._table = (keys[start], ids[start],
                       np.bincount(group, weights=counts).astype(np.int64))

    # --- output -----------------------------------------------------------------------

    def finish(self) -> None:
        """Frames still waiting count as unlabelled, labels as unmatched."""
        self.stats.unlabelled += len(self._views)
        self.stats.unmatched += len(self._labels)
        self._views.clear()
        self._labels.clear()
        self._compact()

    def evidence(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per point: the label most votes of its voxel gave (0: none) and its
        share of the voxel's votes. A point in a voxel no pixel fell into (a
        far or low-resolution view samples the surface sparsely) takes the
        nearest voted voxel within one voxel's reach."""
        self.finish()
        keys, ids, counts = self._table
        label = np.zeros(len(xyz), np.int32)
        share = np.zeros(len(xyz), np.float32)
        if not len(keys) or not len(xyz):
            return label, share
        # per voxel (keys are sorted): total votes and the label with the most
        start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        total = np.add.reduceat(counts, start)
        order = np.lexsort((-counts, keys))         # within a voxel, most votes first
        best = order[start]
        voxels = keys[start]
        mine = voxel_keys(xyz, self.cfg.voxel)
        at = np.minimum(np.searchsorted(voxels, mine), len(voxels) - 1)
        found = voxels[at] == mine
        if not found.all():
            centres = (_voxel_index(voxels) + 0.5) * self.cfg.voxel
            dist, near = cKDTree(centres).query(
                xyz[~found], distance_upper_bound=self.cfg.voxel * 1.5)
            at[~found] = np.minimum(near, len(voxels) - 1)
            found[~found] = np.isfinite(dist)
        label[found] = ids[best[at[found]]]
        share[found] = (counts[best[at[found]]] / total[at[found]]).astype(np.float32)
        return label, share


def _voxel_index(keys: np.ndarray) -> np.ndarray:
    """The (N, 3) integer voxel coordinates ``core.pointcloud.voxel_keys`` packed."""
    mask = (1 << 21) - 1
    return np.stack([(keys >> 42) & mask, (keys >> 21) & mask, keys & mask], 1) - (1 << 20)


def class_names(seg: Segmentation) -> list[str]:
    """The name of each segment's class: the robot's, where its labels gave one,
    else the NYU40 name."""
    return seg.class_names or [class_name(c) for c in seg.class_ids]


def apply_labels(seg: Segmentation, xyz: np.ndarray, rgb: np.ndarray, label: np.ndarray,
                 share: np.ndarray, label_set: LabelSet,
                 cfg: LabelConfig = LabelConfig()) -> Segmentation:
    """The segmentation as the robot's 2D labels correct it, segment by segment
    (segments with too few labelled points stay as they are):

    - a segment labelled mostly wall, floor or ceiling is structure, not an
      object, and the points of the others labelled so leave them;
    - a segment whose points carry two or more object labels in force is split
      by label (two touching objects of different classes);
    - each segment takes the object label most of its labelled points carry
      as its class, its name and, as class confidence, the share that agree;
      its score ranks it by how whole the segmenter found it times that share
      (unless the segmenter is surer of another class than ``keep_confident``);
    - points of no segment and no structure that carry one object label, at
      least ``min_new_points`` of them connected, are an object the segmenter
      missed (ranked below the others).
    """
    nyu = _lookup(label_set, lambda c: c.nyu40)
    known = np.zeros(len(nyu), bool)
    known[[k for k in label_set.classes if k < len(known)]] = True
    label = np.where(label < len(nyu), label, 0)
    labelled = known[label] & (share >= cfg.min_share)
    wall = labelled & np.isin(nyu[label], list(STRUCTURE))
    structure = seg.structure.copy()
    normals = seg.normals
    names = class_names(seg)
    kept: list[tuple] = []      # (segment, class id, name, score, identity, objectness, confidence)
    done = {"named": 0, "split": 0, "structure": 0}
    for i, segment in enumerate(seg.segments):
        pts = segment.points
        base = (segment, seg.class_ids[i],
                names[i], seg.scores[i],
                seg.identities[i] if seg.identities is not None else 0,
                seg.objectness[i] if seg.objectness is not None else None, seg.confidence(i))
        mine = labelled[pts]
        if not len(pts) or mine.mean() < cfg.min_labelled:
            kept.append(base)
            continue
        if wall[pts].sum() >= cfg.structure_share * mine.sum():     # not an object at all
            structure[pts] = np.where(wall[pts], nyu[label[pts]], structure[pts])
            done["structure"] += 1
            continue
        trimmed = wall[pts]                           # wall/floor points leave it
        structure[pts[trimmed]] = nyu[label[pts[trimmed]]]
        pts = pts[~trimmed]
        groups = _split(xyz, pts, label[pts], labelled[pts], cfg)
        done["split"] += len(groups) > 1
        if normals is None:
            normals = estimate_normals(xyz, GeometricConfig().normal_radius)
        whole = seg.scores[i] / max(seg.confidence(i), 1e-6)     # how whole, alone
        for k, members in enumerate(groups):
            ids, votes = np.unique(label[members][labelled[members] & ~wall[members]],
                                   return_counts=True)
            part = describe(xyz, rgb, normals, members)
            identity = base[4] if k == 0 else 0
            if not len(ids):
                kept.append((part, *base[1:4], identity, *base[5:]))
                continue
            top = int(np.argmax(votes))
            entry = label_set.get(int(ids[top]))
            agree = float(votes[top] / votes.sum())
            if agree < cfg.min_share:
                kept.append((part, *base[1:4], identity, *base[5:]))
            elif len(groups) == 1 and entry.nyu40 != base[1] and base[6] > cfg.keep_confident:
                # the segmenter is surer of its own class: kept, in the robot's words
                kept.append((part, base[1], label_set.name_of(base[1]), *base[3:]))
            else:
                kept.append((part, entry.nyu40, entry.name, min(1.0, whole) * agree, identity,
                             base[5], agree))
                done["named"] += 1
    found = _unsegmented(seg, xyz, rgb, label, labelled & ~wall, structure, label_set,
                         normals, cfg)
    kept += found
    log.info("2D labels: %d segments named, %d split, %d taken for structure, %d objects "
             "found that no segment held", done["named"], done["split"], done["structure"],
             len(found))
    if not kept:
        return replace(seg, structure=structure, segments=[], class_ids=[], scores=[],
                       identities=[] if seg.identities is not None else None,
                       objectness=[] if seg.objectness is not None else None,
                       class_confidence=[], class_names=[])
    columns = map(list, zip(*kept, strict=True))
    segments, ids, names, scores, identities, objectness, confidence = columns
    return replace(seg, structure=structure, segments=segments, class_ids=ids, scores=scores,
                   normals=normals, class_names=names, class_confidence=confidence,
                   identities=identities if seg.identities is not None else None,
                   objectness=objectness if seg.objectness is not None else None)


def _unsegmented(seg: Segmentation, xyz: np.ndarray, rgb: np.ndarray, label: np.ndarray,
                 thing: np.ndarray, structure: np.ndarray, label_set: LabelSet,
                 normals: np.ndarray | None, cfg: LabelConfig) -> list[tuple]:
    """Objects the segmenter missed: points of neither a segment nor the
    structure that carry one object label, connected (5 cm) and at least
    ``min_new_points`` of them."""
    free = thing & (structure == 0)
    for segment in seg.segments:
        free[segment.points] = False
    found: list[tuple] = []
    for value in np.unique(label[free]):
        pts = np.flatnonzero(free & (label == value))
        if len(pts) < cfg.min_new_points:
            continue
        grid = VoxelGrid.of(xyz[pts], 0.05)
        parts = connected(grid.coords, 1.8)[grid.point_voxel]
        entry = label_set.get(int(value))
        for part in np.unique(parts):
            members = pts[parts == part]
            if len(members) < cfg.min_new_points:
                continue
            if normals is None:
                normals = estimate_normals(xyz, GeometricConfig().normal_radius)
            found.append((describe(xyz, rgb, normals, members), entry.nyu40, entry.name,
                          NEW_OBJECT_SCORE, 0, NEW_OBJECT_SCORE if seg.objectness is not None
                          else None, 1.0))
    return found


def _lookup(label_set: LabelSet, value) -> np.ndarray:
    """A dense array label id -> ``value(class)`` (0 for ids not in the set)."""
    top = max(label_set.classes, default=0)
    out = np.zeros(top + 1, np.int32)
    for k, c in label_set.classes.items():
        out[k] = value(c)
    return out


def _split(xyz: np.ndarray, pts: np.ndarray, label: np.ndarray, labelled: np.ndarray,
           cfg: LabelConfig) -> list[np.ndarray]:
    """A segment's points in groups, one per object label that holds at least
    ``split_share`` of its labelled points (and ``min_points``); the other
    points join the group of the nearest labelled point. One group: unsplit."""
    ids, counts = np.unique(label[labelled], return_counts=True)
    strong = ids[(counts >= cfg.split_share * labelled.sum()) & (counts >= cfg.min_points)]
    if len(strong) < 2:
        return [pts]
    anchor = labelled & np.isin(label, strong)
    _, nearest = cKDTree(xyz[pts[anchor]]).query(xyz[pts])
    group = label[anchor][nearest]
    parts = [pts[group == g] for g in strong]
    return sorted(parts, key=len, reverse=True)


def unknown_labels(label: np.ndarray, label_set: LabelSet) -> list[int]:
    """Label ids in the evidence that the label set does not name."""
    present = np.unique(label[label > 0])
    return [int(v) for v in present if label_set.get(int(v)) is None]
