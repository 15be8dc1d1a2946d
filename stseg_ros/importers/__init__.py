"""Import labelled rescans of real rooms as an evolving-room dataset (``stseg import``).

``IMPORTERS`` names each importer: ``scannet`` (release layout or preprocessed
arrays; rescans levelled and aligned with ``register_levelled``, objects
matched by overlap) and ``3rscan`` (the dataset's own transforms and
correspondences). Both write the files ``stseg generate --frames 0`` writes,
so ``stseg eval`` and ``stseg run`` read the result (README, "Importing
labelled rescans").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from stseg_ros.importers.common import ImportSummary, Log, Scene, write_dataset
from stseg_ros.importers.labels import LabelMapper
from stseg_ros.importers.matching import MatchConfig


@dataclass
class ImportOptions:
    label_map: Path | None = None        # ScanNet's scannetv2-labels.combined.tsv
    meta: Path | None = None             # 3RScan.json, when not beside the scans
    npy_labels: str = "auto"             # semantic ids of *_sem_label.npy: auto|nyu40|scannet20
    match: MatchConfig = MatchConfig()
    register: Callable | None = None     # (scan_xyz, map_xyz) -> RegistrationResult
    check_alignment: bool = True         # 3RScan: judge the given transforms too


def _scannet(sources, labels: LabelMapper, options: ImportOptions, log: Log) -> Iterator[Scene]:
    from stseg_ros.importers import scannet

    register = options.register
    if register is None:
        from stseg_ros.mapping.registration import register_levelled as register
    return scannet.scenes(sources, labels, register, options.npy_labels, options.match, log)


def _rescan3r(sources, labels: LabelMapper, options: ImportOptions, log: Log
              ) -> Iterator[Scene]:
    from stseg_ros.importers import rescan3r

    return rescan3r.scenes(sources, labels, options.meta, options.check_alignment, log)


# name -> (description, function yielding the scenes)
IMPORTERS: dict[str, tuple[str, Callable]] = {
    "scannet": ("ScanNet scans (release layout or *_vert/_sem_label/_ins_label.npy)",
                _scannet),
    "3rscan": ("3RScan scans with 3RScan.json", _rescan3r),
}


def import_dataset(kind: str, sources: list, out, options: ImportOptions | None = None,
                   log: Log = print) -> ImportSummary:
    """Read the sources with importer ``kind`` and write the dataset ``out``."""
    if kind not in IMPORTERS:
        raise ValueError(f"unknown importer {kind!r} (one of {', '.join(IMPORTERS)})")
    options = options or ImportOptions()
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not empty; choose a new --out")
    labels = LabelMapper.from_tsv(options.label_map) if options.label_map else LabelMapper()
    sources = [Path(s) for s in sources]
    scenes = IMPORTERS[kind][1](sources, labels, options, log)
    info = {"sources": [str(s) for s in sources], "label_map": labels.source}
    return write_dataset(out, kind, scenes, info, log, labels.unknown)
