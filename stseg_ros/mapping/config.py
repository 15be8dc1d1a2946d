"""One settings tree for an offline run: a section per stage, from YAML and
``--set section.key=value``, written back next to the results.

Sections and their keys are the fields of the stages' own config dataclasses
(``source``, ``fusion``, ``drift``, ``levelling``, ``registration``,
``association``, ``segmentation``, ``labels``), so a setting exists once, with its
default and comment where the stage defines it. Unknown sections or keys
and values of the wrong type are errors that name the key and what is valid.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stseg_ros.core.fields import SettingError, check_value, setting
from stseg_ros.core.segmentation import Segmenter
from stseg_ros.learned.instances import CLASS_SOURCES, STRUCTURE_SOURCES, InstanceConfig
from stseg_ros.mapping.association import AssociationConfig
from stseg_ros.mapping.drift import DriftConfig
from stseg_ros.mapping.fusion import FusionConfig
from stseg_ros.mapping.gravity import LevellingConfig
from stseg_ros.mapping.labels import LabelConfig
from stseg_ros.mapping.registration import RegistrationConfig
from stseg_ros.mapping.segmenter import SEGMENTERS, make_segmenter
from stseg_ros.sources.base import SourceConfig


class ConfigError(SettingError):
    """A settings file or ``--set`` value that does not fit the settings tree."""


@dataclass(frozen=True)
class SegmentationConfig:
    segmenter: str = setting(      # segmenter of each revisit (as stseg run --segmenter);
        "", choices=("", *SEGMENTERS))  # empty: learned where its weights are installed
    device: str = setting("cpu", choices=("cpu", "cuda"))  # device of learned segmenters
    sparse_backend: str = setting(  # sparse convolution of learned segmenters (minkowski
        "torch", choices=("torch", "minkowski"))  # needs MinkowskiEngine; same results)
    weights: str = ""              # weights of learned segmenters (stseg train); empty: shipped
    structure: str = setting(      # walls, floors and object bounds of learned segmenters:
        InstanceConfig.structure,  # geometric (the voxel rules; they hold on real scans) or
        choices=STRUCTURE_SOURCES)  # network (its own structure classes)
    classes: str = setting(        # object classes of learned segmenters: classifier (the
        InstanceConfig.classes,    # geometric segmenter's cluster classifier; it names real
        choices=CLASS_SOURCES)     # objects better than the network) or network

    def build(self) -> Segmenter:
        """The segmenter these settings name; unknown names, missing or unfitting
        weights raise here."""
        return make_segmenter(self.segmenter or None, self.device, self.sparse_backend,
                              self.weights or None, self.structure, self.classes)


@dataclass(frozen=True)
class RunConfig:
    source: SourceConfig = field(default_factory=SourceConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    levelling: LevellingConfig = field(default_factory=LevellingConfig)
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    association: AssociationConfig = field(default_factory=AssociationConfig)
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    labels: LabelConfig = field(default_factory=LabelConfig)


def _section(cls, values: dict, name: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{name}: expected a mapping of settings, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: no such setting; {name} has "
                          f"{', '.join(fields)}")
    try:
        return dataclasses.replace(cls(), **{
            k: check_value(fields[k], v, f"{name}.{k}") for k, v in values.items()})
    except ValueError as err:           # the field's range or choices, or the stage's own check
        raise ConfigError(str(err)) from None


def _parse_value(text: str):
    """A ``--set`` value: YAML scalars (numbers, true/false) or the plain string."""
    try:
        return yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        return text


def load_config(path: Path | None = None, sets: typing.Sequence[str] = ()) -> RunConfig:
    """Defaults, then the YAML file ``path`` (sections of keys), then each
    ``section.key=value`` of ``sets``."""
    tree: dict[str, dict] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as err:
            raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected sections of settings, got {type(data).__name__}")
        data.pop("format", None)
        flat = sorted(str(k) for k, v in data.items() if v is not None and not isinstance(v, dict))
        if flat:
            raise ConfigError(f"{path}: {flat[0]!r} is not a section of settings (expected "
                              f"{flat[0]}: {{KEY: VALUE, ...}}; sections: "
                              f"{', '.join(f.name for f in dataclasses.fields(RunConfig))})")
        tree = {str(k): dict(v or {}) for k, v in data.items()}
    for item in sets:
        key, eq, value = item.partition("=")
        section, dot, name = key.strip().partition(".")
        if not eq or not dot or not name:
            raise ConfigError(f"--set {item!r}: expected SECTION.KEY=VALUE, e.g. "
                              "registration.min_fitness=0.4")
        tree.setdefault(section, {})[name] = _parse_value(value.strip())
    sections = {f.name: f for f in dataclasses.fields(RunConfig)}
    unknown = sorted(set(tree) - set(sections))
    if unknown:
        raise ConfigError(f"{unknown[0]}: no such section; sections: {', '.join(sections)}")
    defaults = RunConfig()
    return dataclasses.replace(defaults, **{
        name: _section(type(getattr(defaults, name)), values, name)
        for name, values in tree.items()})


def config_dict(cfg: RunConfig) -> dict:
    """The whole tree as plain YAML-ready values (tuples as lists)."""
    def plain(v):
        return [plain(x) for x in v] if isinstance(v, tuple) else v

    return {s.name: {k: plain(v) for k, v in dataclasses.asdict(getattr(cfg, s.name)).items()}
            for s in dataclasses.fields(cfg)}


def write_config(path: Path, cfg: RunConfig) -> None:
    """The settings a run used, loadable again with ``--config``."""
    text = yaml.safe_dump({"format": "stseg_ros.run_config", **config_dict(cfg)},
                          sort_keys=False)
    Path(path).write_text(text)
