"""Files of a dataset and of a prediction directory (README, "Dataset layout").

Both share one per-epoch format, so a dataset's ground truth is itself a valid
prediction directory::

    DIR/scene_000/epoch_00/labels.npz       class_id, instance_id per cloud point
    DIR/scene_000/epoch_00/instances.json   id, class_id, score per instance
    DIR/scene_000/epoch_00/changes.json     change events since the previous epoch
    DIR/scene_000/epoch_00/transform.json   4x4 map_from_odom of the revisit, and
                                            "registered": false where a prediction
                                            could not place it in the map

A dataset adds ``dataset.json``, ``scene.json``, and per epoch the evaluation
cloud ``cloud.npz`` (xyz in the revisit's odom frame, rgb), ``epoch.json`` and,
unless generated in fast mode, the revisit's rosbag2 in ``bag/``.

A change's ``ambiguous`` flag means uncertain: neither missed nor found (swaps
of identical objects, and events an importer could not confirm). Fields this
module does not know, in entries and at the top level of the JSON files, are
kept in ``extra`` and written back unchanged, so datasets written by other
tools or importers (per-scan labels, reasons) read and round-trip.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from stseg_ros.core.pointcloud import MAX_COORDINATE, usable_points

DATASET_FORMAT = "stseg_ros.dataset"
DATASET_VERSION = 1
CHANGE_KINDS = ("added", "removed", "moved")
# m: a labelled point farther than this from the mapped cloud stays unlabelled,
# whether predictions are read onto evaluation clouds or labels onto fused scans
LABEL_DISTANCE = 0.05


class FormatError(ValueError):
    """A dataset or prediction file is missing, malformed or inconsistent."""


@dataclass
class InstanceEntry:
    """One instance of an epoch. Ground truth adds its pose, size and point count."""

    id: int
    class_id: int
    score: float = 1.0
    class_name: str | None = None
    num_points: int | None = None
    pose: dict | None = None           # x, y, yaw in the map frame
    extents: list[float] | None = None
    objectness: float | None = None    # class-agnostic score; --class-agnostic ranks by it
    extra: dict = field(default_factory=dict)    # fields of other tools, kept as read


@dataclass
class ChangeEntry:
    """A change since the previous epoch; ``ambiguous``: uncertain, neither missed nor
    found (swaps of identical objects, and events an importer could not confirm)."""

    kind: str
    object_id: int
    class_id: int = 0
    ambiguous: bool = False
    previous: dict | None = None
    current: dict | None = None
    confidence: float | None = None    # predictions: the chance the event is real
    extra: dict = field(default_factory=dict)    # fields of other tools, kept as read


@dataclass
class EpochResult:
    """What a prediction (or the ground truth) says about one epoch."""

    class_id: np.ndarray               # (N,) int32 per cloud point, 0 = none
    instance_id: np.ndarray            # (N,) int32 per cloud point, 0 = no instance
    instances: dict[int, InstanceEntry]
    changes: list[ChangeEntry]
    map_from_odom: np.ndarray          # (4, 4)
    extra: dict = field(default_factory=dict)   # file name -> its unknown top-level keys
    registered: bool = True            # False: the predictor refused to place the revisit


def _drop_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def _entry_json(entry: InstanceEntry | ChangeEntry) -> dict:
    """An entry as written: its extra fields flattened back in (known fields win)."""
    known = _drop_none(asdict(entry))
    extra = known.pop("extra")
    return {**known, **{k: v for k, v in extra.items() if k not in known}}


def _entry(cls: type, item, required: tuple[str, ...], path: Path, n: int):
    """One JSON entry as ``cls``; keys ``cls`` does not know go to its ``extra``."""
    if not isinstance(item, dict):
        raise FormatError(f"{path}: entry {n} is not an object")
    missing = [k for k in required if k not in item]
    if missing:
        raise FormatError(f"{path}: entry {n} lacks {', '.join(map(repr, missing))}")
    names = {f.name for f in fields(cls)} - {"extra"}
    return cls(**{k: v for k, v in item.items() if k in names},
               extra={k: v for k, v in item.items() if k not in names})


def _entries(path: Path, key: str, cls: type, required: tuple[str, ...]) -> tuple[list, dict]:
    """The entries under ``key`` of a JSON file, and its other top-level keys."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise FormatError(f"{path}: expected {{{key!r}: [{{{', '.join(required)}, ...}}]}}")
    entries = [_entry(cls, item, required, path, n) for n, item in enumerate(data[key])]
    return entries, {k: v for k, v in data.items() if k != key}


def write_json(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


def read_json(path: Path):
    if not path.is_file():
        raise FormatError(f"{path}: missing")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FormatError(f"{path}: not valid JSON ({err})") from None


def write_epoch_result(epoch_dir: Path, result: EpochResult) -> None:
    epoch_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(epoch_dir / "labels.npz", class_id=result.class_id.astype(np.int32),
                        instance_id=result.instance_id.astype(np.int32))
    extra = result.extra
    write_json(epoch_dir / "instances.json", {
        **extra.get("instances.json", {}),
        "instances": [_entry_json(i) for i in result.instances.values()]})
    write_json(epoch_dir / "changes.json", {
        **extra.get("changes.json", {}),
        "changes": [_entry_json(c) for c in result.changes]})
    write_json(epoch_dir / "transform.json", {
        **extra.get("transform.json", {}),
        "map_from_odom": np.asarray(result.map_from_odom, dtype=float).tolist(),
        **({} if result.registered else {"registered": False})})


def _array(npz, name: str, path: Path, n: int | None) -> np.ndarray:
    if name not in npz:
        raise FormatError(f"{path}: no array '{name}'")
    a = np.asarray(npz[name])
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise FormatError(f"{path}: '{name}' must be a 1-D integer array, got {a.dtype}{a.shape}")
    if n is not None and len(a) != n:
        raise FormatError(f"{path}: '{name}' has {len(a)} entries, the cloud has {n} points")
    return a.astype(np.int64)


def read_epoch_result(epoch_dir: Path, num_points: int | None = None) -> EpochResult:
    """Read and check one epoch of a prediction directory (or of ground truth)."""
    path = epoch_dir / "labels.npz"
    if not path.is_file():
        raise FormatError(f"{path}: missing")
    npz = load_npz(path, ("class_id", "instance_id"))
    cls = _array(npz, "class_id", path, num_points)
    inst = _array(npz, "instance_id", path, len(cls))
    ipath = epoch_dir / "instances.json"
    entries, instances_extra = _entries(ipath, "instances", InstanceEntry, ("id", "class_id"))
    try:
        instances = {int(e.id): e for e in entries}
    except (TypeError, ValueError) as err:
        raise FormatError(f"{ipath}: instance ids must be integers ({err})") from None
    unknown = sorted(set(np.unique(inst).tolist()) - set(instances) - {0})
    if unknown:
        raise FormatError(f"{ipath}: instance ids {unknown[:5]} label points but are not listed")
    changes, changes_extra = _entries(epoch_dir / "changes.json", "changes", ChangeEntry,
                                      ("kind", "object_id"))
    tpath = epoch_dir / "transform.json"
    if not tpath.is_file():
        raise FormatError(f"{tpath}: missing (predictions must carry the revisit-to-map "
                          "transform)")
    transform = read_json(tpath)
    try:
        pose = np.asarray(transform["map_from_odom"], dtype=float)
    except (KeyError, TypeError, ValueError) as err:
        raise FormatError(f"{tpath}: expected {{'map_from_odom': 4x4}} ({err})") from None
    if pose.shape != (4, 4) or not np.isfinite(pose).all():
        raise FormatError(f"{tpath}: map_from_odom must be a finite 4x4 matrix")
    registered = transform.get("registered", True)
    if not isinstance(registered, bool):
        raise FormatError(f"{tpath}: 'registered' must be true or false, got {registered!r}")
    extra = {"instances.json": instances_extra, "changes.json": changes_extra,
             "transform.json": {k: v for k, v in transform.items()
                                if k not in ("map_from_odom", "registered")}}
    return EpochResult(cls, inst, instances, changes, pose,
                       {name: keys for name, keys in extra.items() if keys}, registered)


def load_npz(path: Path, names: tuple[str, ...],
             error: type[ValueError] = FormatError) -> dict[str, np.ndarray]:
    """The arrays ``names`` of an .npz file that has them, read without
    pickles; a bare .npy array, a folder, a damaged or foreign file is
    ``error`` naming the file."""
    try:
        loaded = np.load(path, allow_pickle=False)
    except IsADirectoryError:
        raise error(f"{path}: a folder, expected an .npz file") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise error(f"{path}: not a readable .npz ({err})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise error(f"{path}: a bare array, expected an .npz of named arrays")
    try:
        with loaded as npz:
            return {n: np.asarray(npz[n]) for n in names if n in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise error(f"{path}: not a readable .npz ({err})") from None


def write_cloud(epoch_dir: Path, xyz: np.ndarray, rgb: np.ndarray) -> None:
    # noisy float coordinates barely compress; storing them raw is 10x faster
    np.savez(epoch_dir / "cloud.npz", xyz=xyz.astype(np.float32),
                        rgb=rgb.astype(np.uint8))


def read_cloud(epoch_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """xyz (N, 3) and rgb (N, 3) of an epoch's ``cloud.npz``, checked.

    ``labels.npz`` has one label per point of this cloud, so a point cannot be
    dropped here: points that are not finite or beyond ``MAX_COORDINATE`` make
    the file a FormatError (naming it and how many), as do wrong shapes.
    """
    path = Path(epoch_dir) / "cloud.npz"
    if not path.is_file():
        raise FormatError(f"{path}: missing")
    npz = load_npz(path, ("xyz", "rgb"))
    missing = [k for k in ("xyz", "rgb") if k not in npz]
    if missing:
        raise FormatError(f"{path}: no array {', '.join(map(repr, missing))} "
                          "(expected xyz (N, 3), rgb (N, 3))")
    xyz, rgb = npz["xyz"], npz["rgb"]
    for name, a in (("xyz", xyz), ("rgb", rgb)):
        if a.ndim != 2 or a.shape[1] != 3 or a.dtype.kind not in "fiu":
            raise FormatError(f"{path}: '{name}' is {a.dtype}{a.shape}, expected numbers of "
                              "shape (N, 3)")
    if len(rgb) != len(xyz):
        raise FormatError(f"{path}: 'rgb' has {len(rgb)} rows, 'xyz' {len(xyz)}")
    bad = ~usable_points(xyz)
    if bad.any():
        raise FormatError(f"{path}: {int(bad.sum())} of {len(xyz)} points are not finite or "
                          f"beyond {MAX_COORDINATE:g} m (first: point {int(np.argmax(bad))}); "
                          "labels.npz labels every point, so they cannot be dropped: fix "
                          "the file")
    return xyz, rgb


@dataclass
class DatasetIndex:
    """The scenes of a dataset and their epoch folders, as ``dataset.json`` lists them."""

    root: Path
    info: dict
    scenes: list[str]

    def epochs(self, scene: str) -> list[str]:
        return [f"epoch_{t:02d}" for t in range(int(self.scene_info(scene)["epochs"]))]

    def scene_info(self, scene: str) -> dict:
        return read_json(self.root / scene / "scene.json")


def open_dataset(root: Path) -> DatasetIndex:
    """Read ``dataset.json``; a foreign or missing file is a FormatError."""
    root = Path(root)
    info = read_json(root / "dataset.json")
    if not isinstance(info, dict) or info.get("format") != DATASET_FORMAT:
        raise FormatError(f"{root / 'dataset.json'}: not a {DATASET_FORMAT} file")
    if int(info.get("version", -1)) > DATASET_VERSION:
        raise FormatError(f"{root}: dataset version {info['version']} is newer than this "
                          f"stseg_ros reads ({DATASET_VERSION})")
    return DatasetIndex(root, info, list(info["scenes"]))
