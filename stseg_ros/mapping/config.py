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

from stseg_ros.learned.instances import InstanceConfig
from stseg_ros.mapping.association import AssociationConfig
from stseg_ros.mapping.drift import DriftConfig
from stseg_ros.mapping.fusion import FusionConfig
from stseg_ros.mapping.gravity import LevellingConfig
from stseg_ros.mapping.labels import LabelConfig
from stseg_ros.mapping.registration import RegistrationConfig
from stseg_ros.sources.base import SourceConfig


class ConfigError(ValueError):
    """A settings file or ``--set`` value that does not fit the settings tree."""


@dataclass(frozen=True)
class SegmentationConfig:
    segmenter: str = ""            # learned, learned-per-epoch, geometric; empty: the default
    device: str = "cpu"            # cpu or cuda (learned segmenters)
    sparse_backend: str = "torch"  # torch or minkowski (learned segmenters)
    weights: str = ""              # empty: the shipped weights
    structure: str = InstanceConfig.structure   # learned: network or geometric walls/floors
    classes: str = InstanceConfig.classes       # learned: classes by network or classifier


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


def _coerce(value, like, key: str):
    """``value`` (from YAML or a ``--set`` string) as the type of the default ``like``."""
    try:
        if isinstance(like, bool):
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if isinstance(like, tuple):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(type(like[0])(v) for v in items) if like else tuple(items)
        if isinstance(like, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        return type(like)(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: {value!r} is not a valid {type(like).__name__}") from None


def _section(cls, values: dict, name: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{name}: expected a mapping of settings, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: no such setting; {name} has "
                          f"{', '.join(fields)}")
    defaults = cls()
    try:
        return dataclasses.replace(defaults, **{
            k: _coerce(v, getattr(defaults, k), f"{name}.{k}") for k, v in values.items()})
    except ValueError as err:           # a stage's own check of its values
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
