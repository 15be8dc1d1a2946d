"""The nodes' settings tree: every parameter of the accumulator, the mapper
and map_server, as sections of config dataclasses.

A node's parameters are a list of sections (``core.fields.Section``): a
prefix, a dataclass and the fields of it that are parameters. Shared stages
keep the names ``stseg run --set`` gives them (``segmentation.*``,
``registration.*``, ``fusion.*``, ``source.max_pair_gap_s`` ...); the
settings only the nodes have are the dataclasses below, unprefixed. The
nodes declare and read these sections (``ros.params``), ``config/mapping.yaml``
is rendered from them (``python -m stseg_ros.ros.settings >
config/mapping.yaml``; a test fails when the committed file differs), and the
launch file takes its per-setting arguments from them. Descriptions are the
fields' comments, ranges and choices their ``setting`` metadata.

Nothing here imports launch, nor rclpy but to render ``autostart``'s
description, so the launch file builds its arguments without either.
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass

import yaml

from stseg_ros.core.fields import Section, check_value, describe_field, section, setting
from stseg_ros.ingest.accumulator import AccumulatorConfig
from stseg_ros.mapping.association import AssociationConfig
from stseg_ros.mapping.config import SegmentationConfig
from stseg_ros.mapping.drift import DriftConfig
from stseg_ros.mapping.fusion import FusionConfig
from stseg_ros.mapping.gravity import LevellingConfig
from stseg_ros.mapping.labels import LabelConfig
from stseg_ros.mapping.registration import RegistrationConfig
from stseg_ros.sources.base import SourceConfig

DEFAULT_DB = "~/.ros/stseg_ros/memory.db"
TRANSPORTS = {"color": ("raw", "compressed"), "depth": ("raw", "compressedDepth")}
LABEL_FUSION = ("topic", "id_divisor", "voxel", "pixel_stride", "max_gap_s")   # accumulator's


@dataclass(frozen=True)
class MapperNodeConfig:
    db_path: str = DEFAULT_DB   # SQLite object memory: created if missing, reloaded (same
                                # ids) if present; a foreign, corrupt or newer file is
                                # refused and left untouched
    map_frame: str = "map"      # frame of the published instances, markers and cloud (REP 105)
    publish_cloud: bool = True  # publish ~/segmented_cloud (x y z rgb instance_id class_id
                                # epoch) after each revisit


@dataclass(frozen=True)
class CameraInputConfig:
    """The accumulator's inputs: what only a node subscribing to a camera has."""

    pose_source: str = setting(   # where the camera pose comes from: tf (/tf + /tf_static)
        "tf", choices=("tf", "odometry"))  # or odometry (the odom topic, + /tf_static)
    reliable_images: bool = True  # subscribe to images reliably (false: best effort, for
                                  # drivers that publish best effort)
    color_transport: str = setting(  # image_transport of the colour images (compressed:
        "raw", choices=TRANSPORTS["color"])  # jpeg/png on camera/color/image_raw/compressed)
    depth_transport: str = setting(  # image_transport of the depth images (compressedDepth:
        "raw", choices=TRANSPORTS["depth"])  # png on camera/depth/image_raw/compressedDepth)
    image_queue_depth: int = setting(  # images of each kind the subscriptions hold while the
        60, low=1)                  # node is busy (KEEP_LAST); older ones are lost, counted
    arrival_timeout_s: float = setting(  # s, end_revisit given the counts of images sent
        10.0, low=0)                # waits this long at most for them to arrive
    status_period_s: float = setting(  # s between progress lines of an open revisit; 0: none
        5.0, low=0)


@dataclass(frozen=True)
class MapServerConfig:
    snapshot: str = ""         # snapshot JSON to publish (stseg_ros/core/snapshot.py); empty:
                               # the example living-room history shipped with the package
    map_frame: str = ""        # frame id of the published poses; empty: the snapshot's
    epoch_period: float = setting(  # s between published epochs; 0 publishes only the latest
        1.0, low=0)
    loop: bool = False         # start again from the first epoch after the last


STAGES_NOTE = ("Stages, named as `stseg run --set SECTION.KEY=VALUE` names them (README, "
               "\"Offline mapper\"); each comment is the setting's own, where its stage "
               "defines it.")
ACCUMULATOR: tuple[Section, ...] = (
    section("", CameraInputConfig),
    section("", AccumulatorConfig),
    section("source.", SourceConfig, only=("max_pair_gap_s",), note=STAGES_NOTE),
    section("fusion.", FusionConfig),
    # the fragments the mapper's drift correction aligns are made here
    section("drift.", DriftConfig, only=("fragment_frames",)),
    # the robot's 2D labels are fused here; the mapper reads what they name
    section("labels.", LabelConfig, only=LABEL_FUSION,
            note="The robot's own 2D labels (README \"Your own 2D labels\"): its label "
                 "images, fused with the frames they label."),
)
# the mapper's stages, as ``Mapper(memory, segmenter, **stages)`` takes them
MAPPER_STAGES: tuple[Section, ...] = (
    section("levelling.", LevellingConfig, note="Levelling of each revisit before "
            "registration, as stseg run levels it (README \"Your own data\", \"Up\")."),
    section("registration.", RegistrationConfig),
    section("association.", AssociationConfig),
    section("drift.", DriftConfig, skip=("fragment_frames", "pixel_stride"),
            note="Drift correction; the fragments themselves are the accumulator's "
                 "(drift.fragment_frames there)."),
    section("labels.", LabelConfig, skip=LABEL_FUSION,
            note="The robot's own 2D labels: its label set and how they correct and name "
                 "segments (the label images themselves are the accumulator's)."),
)
MAPPER: tuple[Section, ...] = (
    section("", MapperNodeConfig),
    section("segmentation.", SegmentationConfig, note=STAGES_NOTE),
    *MAPPER_STAGES,
)
MAP_SERVER: tuple[Section, ...] = (section("", MapServerConfig),)
NODES: dict[str, tuple[Section, ...]] = {
    "accumulator": ACCUMULATOR, "mapper": MAPPER, "map_server": MAP_SERVER}
MANAGED = ("accumulator", "mapper")          # lifecycle nodes: they have autostart


def parameters(node: str) -> dict[str, tuple[Section, dataclasses.Field]]:
    """parameter name -> (its section, its field), for node ``node``."""
    return {s.prefix + f.name: (s, f) for s in NODES[node] for f in s.fields}


def _autostart() -> tuple[str, bool, str]:
    """``autostart``, which ``ros.lifecycle`` declares on every managed node:
    name, default, description (imported here only: it brings in rclpy)."""
    from stseg_ros.ros.lifecycle import AUTOSTART

    return "autostart", True, AUTOSTART


def defaults(node: str) -> dict:
    """parameter name -> default, as the node declares them (autostart too)."""
    out = {"autostart": True} if node in MANAGED else {}
    return {**out, **{name: f.default for name, (_, f) in parameters(node).items()}}


# --- config/mapping.yaml -------------------------------------------------------------

HEADER = """\
# Parameters of the stseg_ros nodes, in the `--ros-args --params-file` format.
# Every parameter a node declares is listed here with its default; ranges and
# choices are enforced (ros2 param set refuses values out of range, configure
# fails naming the parameter). `/**/NODE` matches the node in any namespace.
# Generated from the settings tree (stseg_ros/ros/settings.py); do not edit,
# regenerate: python -m stseg_ros.ros.settings > config/mapping.yaml
"""


def _comment(text: str, indent: str) -> list[str]:
    return textwrap.wrap(text, width=88 - len(indent), initial_indent=f"{indent}# ",
                         subsequent_indent=f"{indent}# ", break_on_hyphens=False)


def _value(value) -> str:
    if value == "":
        return '""'
    return yaml.safe_dump(value, default_flow_style=True, width=1000).splitlines()[0]


def render_params_file() -> str:
    """``config/mapping.yaml``: a block per node, each parameter with its
    default and its description (comment, range or choices) above it."""
    lines = HEADER.splitlines()
    indent = " " * 4
    for node, sections in NODES.items():
        lines += ["", f"/**/{node}:", "  ros__parameters:"]
        if node in MANAGED:
            name, default, text = _autostart()
            lines += [*_comment(text, indent), f"{indent}{name}: {_value(default)}"]
        for s in sections:
            if s.note:
                lines += ["", *_comment(s.note, indent)]
            for f in s.fields:
                lines += [*_comment(describe_field(s.cls, f.name), indent),
                          f"{indent}{s.prefix}{f.name}: {_value(f.default)}"]
    return "\n".join(lines) + "\n"


# --- launch arguments ----------------------------------------------------------------

# launch argument -> (node, parameter): what a robot user sets at launch; the
# rest stays in params_file
LAUNCH_ARGUMENTS: dict[str, tuple[str, str]] = {
    "db_path": ("mapper", "db_path"),
    "segmenter": ("mapper", "segmentation.segmenter"),
    "device": ("mapper", "segmentation.device"),
    "weights": ("mapper", "segmentation.weights"),
    "map_frame": ("mapper", "map_frame"),
    "pose_source": ("accumulator", "pose_source"),
    "odom_frame": ("accumulator", "odom_frame"),
    "camera_frame": ("accumulator", "camera_frame"),
    "color_transport": ("accumulator", "color_transport"),
    "depth_transport": ("accumulator", "depth_transport"),
    "label_topic": ("accumulator", "labels.topic"),
    "label_set": ("mapper", "labels.label_set"),
}


def launch_argument_description(argument: str) -> str:
    """The description of a per-setting launch argument: its parameter's."""
    node, name = LAUNCH_ARGUMENTS[argument]
    s, f = parameters(node)[name]
    return (f"{node} parameter {name}: {describe_field(s.cls, f.name)}. Empty (the default): "
            "as params_file says")


def launch_overrides(given: Mapping[str, str]) -> dict[str, dict]:
    """node -> {parameter: value} for the per-setting launch arguments given
    (not empty), each checked and typed as its parameter; a value that does
    not fit raises ``SettingError`` naming the argument."""
    out: dict[str, dict] = {node: {} for node in MANAGED}
    for argument, text in given.items():
        if argument not in LAUNCH_ARGUMENTS or text == "":
            continue
        node, name = LAUNCH_ARGUMENTS[argument]
        _, f = parameters(node)[name]
        out[node][name] = check_value(f, text, argument)
    return out


def main() -> int:
    sys.stdout.write(render_params_file())
    return 0


if __name__ == "__main__":
    sys.exit(main())
