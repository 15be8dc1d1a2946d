"""ScanNet scans: the release layout, or the per-point arrays many repositories
preprocess it into.

Release layout, per scan ``<scan>`` (for example ``scene0001_00``)::

    <scan>_vh_clean_2.ply                  mesh vertices: x y z red green blue
    <scan>_vh_clean_2.0.010000.segs.json   {"segIndices": [segment of each vertex]}
    <scan>.aggregation.json                {"segGroups": [{"objectId", "label",
                                                           "segments": [...]}]}

Preprocessed arrays: ``<scan>_vert*.npy`` (N, >= 6): x y z r g b (further
columns ignored), ``<scan>_sem_label*.npy`` (NYU40 ids, or the 0..19 train ids
of ScanNet's benchmark, told apart and reported), ``<scan>_ins_label*.npy``.

Scans named ``sceneRRRR_SS`` with the same RRRR are rescans of one room: they
become the epochs of one scene, in SS order. ScanNet gives no correspondences
between them, so ``matching.link_scans`` aligns and matches them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stseg_ros.core.classes import class_name
from stseg_ros.core.layout import FormatError, read_json
from stseg_ros.importers.common import Log, Scan, Scene
from stseg_ros.importers.labels import LabelMapper
from stseg_ros.importers.matching import MatchConfig, link_scans
from stseg_ros.importers.ply import read_ply_vertices

PLY = "_vh_clean_2.ply"
SEGS = "_vh_clean_2.0.010000.segs.json"
AGGREGATION = ".aggregation.json"
# files of a release scan, longest first so a name is cut at the right place
RELEASE_FILES = sorted((PLY, SEGS, AGGREGATION, "_vh_clean_2.labels.ply", "_vh_clean.ply",
                        "_vh_clean.aggregation.json", "_vh_clean.segs.json", ".sens", ".txt",
                        "_2d-label.zip", "_2d-instance.zip", "_2d-label-filt.zip",
                        "_2d-instance-filt.zip"), key=len, reverse=True)
NPY = re.compile(r"^(?P<scan>.+?)_(?P<what>vert|sem_label|ins_label)[^/]*\.npy$")
SCAN_NAME = re.compile(r"^(?P<room>scene\d{4})_(?P<order>\d{2})$")
# ScanNet benchmark train ids 0..19 -> NYU40 (VALID_CLASS_IDS of its scripts)
TRAIN_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24, 28, 33, 34, 36, 39)


@dataclass(frozen=True)
class ScanSource:
    name: str
    folder: Path
    layout: str                      # "release" or "npy"

    @property
    def room(self) -> tuple[str, int]:
        m = SCAN_NAME.match(self.name)
        return (m["room"], int(m["order"])) if m else (self.name, 0)


def _scan_of_file(path: Path) -> ScanSource | None:
    m = NPY.match(path.name)
    if m:
        return ScanSource(m["scan"], path.parent, "npy")
    for suffix in RELEASE_FILES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return ScanSource(path.name[:-len(suffix)], path.parent, "release")
    return None


def _scans_in(folder: Path, depth: int = 2) -> list[ScanSource]:
    found = {}
    for f in sorted(folder.iterdir()):
        if f.is_file() and (f.name.endswith(PLY) or NPY.match(f.name)):
            scan = _scan_of_file(f)
            if scan.layout == "npy" and NPY.match(f.name)["what"] != "vert":
                continue
            found.setdefault(scan.name, scan)
    if not found and depth > 0:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            for scan in _scans_in(sub, depth - 1):
                found.setdefault(scan.name, scan)
    return list(found.values())


def find_scans(sources: list[Path], log: Log = print) -> list[ScanSource]:
    """The scans named by the sources: scan folders, files of a scan, or folders
    holding several scans (up to two levels down)."""
    scans: dict[str, ScanSource] = {}
    for source in map(Path, sources):
        if source.is_file():
            scan = _scan_of_file(source)
            if scan is None:
                raise FormatError(f"{source}: not a file of a ScanNet scan (expected "
                                  f"<scan>{PLY}, <scan>{AGGREGATION}, <scan>_vert.npy, ...)")
            if scan.layout == "release" and (scan.folder / f"{scan.name}_vert.npy").is_file() \
                    and not (scan.folder / f"{scan.name}{PLY}").is_file():
                scan = ScanSource(scan.name, scan.folder, "npy")
            found = [scan]
        elif source.is_dir():
            found = _scans_in(source)
            if not found:
                raise FormatError(f"{source}: no ScanNet scans in it (no *{PLY} or *_vert.npy, "
                                  "also not one or two folders down)")
        else:
            raise FormatError(f"{source}: missing")
        for scan in found:
            if scan.name in scans and scans[scan.name].folder != scan.folder:
                log(f"{scan.name}: found twice, using {scans[scan.name].folder}, "
                    f"not {scan.folder}")
                continue
            scans.setdefault(scan.name, scan)
    return list(scans.values())


def _json_part(path: Path, data, key: str, kind: type):
    if not isinstance(data, dict) or not isinstance(data.get(key), kind):
        raise FormatError(f"{path}: expected a JSON object with {key!r} ({kind.__name__})")
    return data[key]


def read_release(src: ScanSource, labels: LabelMapper) -> Scan:
    """One scan of the ScanNet release layout: vertices, segments, aggregation."""
    ply, segs, agg = (src.folder / f"{src.name}{s}" for s in (PLY, SEGS, AGGREGATION))
    for path, what in ((segs, "the over-segmentation"), (agg, "the object annotation")):
        if not path.is_file():
            raise FormatError(f"{path}: missing ({what} of scan {src.name})")
    v = read_ply_vertices(ply)
    missing = [k for k in ("x", "y", "z") if k not in v]
    if missing:
        raise FormatError(f"{ply}: vertices lack {', '.join(missing)}")
    xyz = np.stack([v["x"], v["y"], v["z"]], axis=1).astype(np.float32)
    notes = []
    if all(k in v for k in ("red", "green", "blue")):
        rgb = np.stack([v["red"], v["green"], v["blue"]], axis=1)
    else:
        rgb = np.zeros((len(xyz), 3))
        notes.append(f"{ply.name}: no vertex colours")
    seg = np.asarray(_json_part(segs, read_json(segs), "segIndices", list))
    if seg.shape != (len(xyz),) or (seg.size and not np.issubdtype(seg.dtype, np.integer)):
        raise FormatError(f"{segs}: {seg.size} segment indices for {len(xyz)} vertices of "
                          f"{ply.name}")
    groups = _json_part(agg, read_json(agg), "segGroups", list)
    lut = np.zeros(int(seg.max(initial=0)) + 1, dtype=np.int64)
    objects, classes, shared = {}, {}, 0
    for n, group in enumerate(groups):
        try:
            oid = int(group["objectId"] if "objectId" in group else group["id"]) + 1
            label = str(group["label"])
            segments = np.asarray(group["segments"], dtype=np.int64)
        except (KeyError, TypeError, ValueError):
            raise FormatError(f"{agg}: segGroups entry {n} needs objectId (or id), label and "
                              "segments") from None
        segments = segments[(segments >= 0) & (segments < len(lut))]
        shared += int((lut[segments] != 0).sum())
        lut[segments[lut[segments] == 0]] = oid
        objects[oid], classes[oid] = label, labels(label)
    if shared:
        notes.append(f"{agg.name}: {shared} segments in more than one object (first kept)")
    obj = np.where(seg >= 0, lut[np.clip(seg, 0, None)], 0)    # negative: no segment
    return Scan(src.name, xyz, rgb.astype(np.uint8), obj, objects, classes,
                [str(ply), str(segs), str(agg)], notes)


def _npy_file(src: ScanSource, what: str, tail: str | None = None
              ) -> tuple[Path, str, list[str]]:
    """The scan's ``<scan>_<what><tail>.npy``: the given tail (``_all`` in
    ``_vert_all.npy``) where it exists, else the shortest name; and the tail used."""
    prefix = f"{src.name}_{what}"
    matches = sorted((p for p in src.folder.glob(f"{prefix}*.npy")
                      if (m := NPY.match(p.name)) and m["scan"] == src.name
                      and m["what"] == what), key=lambda p: (len(p.name), p.name))
    if not matches:
        raise FormatError(f"{src.folder / (prefix + '.npy')}: missing "
                          f"(no {prefix}*.npy next to the scan's other arrays)")
    same = [p for p in matches if p.name[len(prefix):-4] == tail]
    chosen = same[0] if same else matches[0]
    others = [p.name for p in matches if p != chosen]
    notes = [f"used {chosen.name}, not {', '.join(others)}"] if others else []
    return chosen, chosen.name[len(prefix):-4], notes


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise FormatError(f"{path}: not a readable .npy ({err})") from None


def semantic_ids(sem: np.ndarray, xyz: np.ndarray, path: Path, mode: str = "auto"
                 ) -> tuple[np.ndarray, str]:
    """NYU40 ids of a ``*_sem_label.npy``, and which kind of ids it held.

    ``auto``: negative values or 255 as ignore mean train ids (0..19); values
    above 19 mean NYU40; otherwise the floor decides: the lowest points of a
    room are floor, which is 2 in NYU40 and 1 as a train id.
    """
    sem = np.asarray(sem).reshape(-1).astype(np.int64)
    if mode == "auto":
        ignore = (sem < 0) | (sem == 255)
        if ignore.any():
            mode = "scannet20"
        elif sem.max(initial=0) > 19:
            mode = "nyu40"
        else:
            z = xyz[:, 2]
            low = sem[z <= np.percentile(z, 2) + 0.05] if len(z) else sem
            floor = np.bincount(low[low >= 0]).argmax() if low.size else 2
            mode = "scannet20" if floor == 1 else "nyu40"
        how = f"{mode} (detected)"
    elif mode in ("nyu40", "scannet20"):
        how = f"{mode} (given)"
    else:
        raise ValueError(f"unknown semantic id kind {mode!r} (auto, nyu40 or scannet20)")
    if mode == "scannet20":
        valid = (sem >= 0) & (sem < len(TRAIN_IDS))
        out = np.zeros(len(sem), dtype=np.int64)
        out[valid] = np.asarray(TRAIN_IDS)[sem[valid]]
        bad = ~valid & (sem >= 0) & (sem != 255)
    else:
        out = np.where((sem >= 0) & (sem <= 40), sem, 0)
        bad = (sem > 40) | (sem < 0)
    if bad.any():
        raise FormatError(f"{path}: {int(bad.sum())} labels outside the {mode} ids "
                          f"(for example {int(sem[bad][0])})")
    return out, how


def read_npy(src: ScanSource, npy_labels: str = "auto") -> Scan:
    """One scan of preprocessed per-point arrays (vertices, semantic, instance)."""
    vert_path, tail, n1 = _npy_file(src, "vert")
    (sem_path, _, n2), (ins_path, _, n3) = (_npy_file(src, w, tail)
                                            for w in ("sem_label", "ins_label"))
    vert, sem, ins = _load(vert_path), _load(sem_path), _load(ins_path)
    if vert.ndim != 2 or vert.shape[1] < 6:
        raise FormatError(f"{vert_path}: expected (N, 6+) x y z r g b, got {vert.shape}")
    n = len(vert)
    for path, a in ((sem_path, sem), (ins_path, ins)):
        if a.size != n:
            raise FormatError(f"{path}: {a.size} labels for the {n} points of {vert_path.name}")
    notes = n1 + n2 + n3
    if vert.shape[1] > 6:
        notes.append(f"{vert_path.name}: {vert.shape[1]} columns, the first 6 used")
    xyz = vert[:, :3].astype(np.float32)
    rgb = vert[:, 3:6].astype(np.float64)
    if rgb.size and rgb.max() <= 1.0:
        rgb = rgb * 255.0
        notes.append(f"{vert_path.name}: colours in 0..1, scaled to 0..255")
    elif rgb.size and rgb.min() < -0.01:          # normalised to -1..1 by some loaders
        rgb = (rgb + 1.0) * 127.5
        notes.append(f"{vert_path.name}: colours in -1..1, scaled to 0..255")
    cls, how = semantic_ids(sem, xyz, sem_path, npy_labels)
    notes.append(f"{sem_path.name}: {how}")
    ins = np.asarray(ins).reshape(-1).astype(np.int64)
    none = (ins < 0) if (ins < 0).any() else (ins == 0)
    none |= cls == 0
    raw = np.where(none, -1, ins)
    values, local = np.unique(raw, return_inverse=True)
    local = local.reshape(-1) + (0 if values[0] == -1 else 1)   # -1 -> 0, then 1..K
    labels, classes = {}, {}
    for obj in range(1, int(local.max(initial=0)) + 1):
        votes = np.bincount(cls[local == obj], minlength=41)
        votes[0] = 0
        classes[obj] = int(votes.argmax())
        labels[obj] = class_name(classes[obj])
    return Scan(src.name, xyz, np.clip(np.rint(rgb), 0, 255).astype(np.uint8), local, labels,
                classes, [str(vert_path), str(sem_path), str(ins_path)], notes)


def scenes(sources: list[Path], labels: LabelMapper, register, npy_labels: str = "auto",
           match: MatchConfig | None = None, log: Log = print) -> Iterator[Scene]:
    """One scene per room, its scans as epochs in scan order."""
    match = match or MatchConfig()
    found = find_scans(sources, log)
    rooms: dict[str, list[ScanSource]] = {}
    for scan in sorted(found, key=lambda s: s.room):
        rooms.setdefault(scan.room[0], []).append(scan)
    for room, members in rooms.items():
        scans = []
        for src in members:
            scan = read_release(src, labels) if src.layout == "release" else \
                read_npy(src, npy_labels)
            scan.check()
            for note in scan.notes:
                log(f"{scan.name}: {note}")
            scans.append(scan)
        yield Scene(room, "scannet", link_scans(scans, register, match, log),
                    {"layout": sorted({s.layout for s in members})})
