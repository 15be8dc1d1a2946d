"""Input sources: one module per format, chosen by name or detected from the path.

``open_inputs(paths)`` turns what a user points ``stseg run`` at into
revisits in order: each path is one revisit (a bag, a frame folder, a cloud
file), or a folder holding several (its entries in name order). ``--source
NAME`` skips detection. Formats are tried in the order of ``SOURCES``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from stseg_ros.sources.base import InputError, RevisitInput, Source, SourceConfig
from stseg_ros.sources.clouds import CloudSource
from stseg_ros.sources.rosbag import RosbagSource
from stseg_ros.sources.scannet import ScanNetFramesSource
from stseg_ros.sources.sevenscenes import SevenScenesSource
from stseg_ros.sources.tum import TumSource

SOURCES: dict[str, type[Source]] = {s.name: s for s in (
    RosbagSource, TumSource, SevenScenesSource, ScanNetFramesSource, CloudSource)}

__all__ = ["SOURCES", "InputError", "RevisitInput", "SourceConfig", "detect_source",
           "open_inputs"]


def detect_source(path: Path) -> type[Source] | None:
    """The first source whose format ``path`` is in, or None."""
    return next((s for s in SOURCES.values() if s.detect(path)), None)


def _source(name: str | None, path: Path) -> type[Source] | None:
    if name is None:
        return detect_source(path)
    if name not in SOURCES:
        raise InputError(f"unknown source {name!r}; available: {', '.join(SOURCES)}")
    return SOURCES[name] if SOURCES[name].detect(path) else None


def open_inputs(paths: Sequence[Path], name: str | None = None,
                cfg: SourceConfig | None = None,
                log: Callable[[str], None] | None = None,
                label_topic: str = "") -> list[RevisitInput]:
    """The revisits of ``paths`` in order (see the module docstring); ``log``
    is told what the sources found (a bag's topics, when it is read);
    ``label_topic``: the bags' topic of 2D label images, if any."""
    cfg = cfg or SourceConfig()
    revisits: list[RevisitInput] = []
    for path in map(Path, paths):
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        source = _source(name, path)
        if source is None and path.is_dir():
            inside = [(p, _source(name, p)) for p in sorted(path.iterdir())
                      if not p.name.startswith(".")]
            inside = [(p, s) for p, s in inside if s is not None]
            if inside:
                for p, s in inside:
                    revisits += s(p, cfg, log, label_topic).revisits()
                continue
        if source is None:
            kinds = "; ".join(f"{s.name}: {s.description}" for s in SOURCES.values())
            what = f"a {name} input" if name else "in any format this package reads"
            raise InputError(f"{path}: not {what}, nor a folder of them ({kinds})")
        revisits += source(path, cfg, log, label_topic).revisits()
    unlabelled = [r for r in revisits if r.source != RosbagSource.name]
    if label_topic and unlabelled:
        raise InputError(f"{unlabelled[0].path}: a {unlabelled[0].source} input has no label "
                         f"images; labels.topic ({label_topic}) is read from bags only")
    return revisits
