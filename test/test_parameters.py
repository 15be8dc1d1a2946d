"""One settings tree: ``config/mapping.yaml`` is rendered from it and lists
every parameter the nodes declare, with the value the node would take
without it; the nodes' stage sections are the ones ``stseg run --set`` sets,
with the stages' own defaults; ranges and choices hold in both."""

from __future__ import annotations

import dataclasses
import math

import pytest
import yaml
from conftest import REPO_ROOT
from rclpy.parameter import Parameter

IMPLICIT = {"use_sim_time", "start_type_description_service"}   # every rclpy node has them


def _declared(node) -> dict:
    return {name: p.value for name, p in node._parameters.items()   # noqa: SLF001
            if name not in IMPLICIT}


def _make(name: str, **params):
    from stseg_ros.ros.accumulator_node import AccumulatorNode
    from stseg_ros.ros.map_server import MapServer
    from stseg_ros.ros.mapper_node import MapperNode

    overrides = [Parameter(k, value=v) for k, v in params.items()]
    if name == "map_server":
        return MapServer(parameter_overrides=overrides)
    make = AccumulatorNode if name == "accumulator" else MapperNode
    return make(parameter_overrides=[Parameter("autostart", value=False), *overrides])


@pytest.mark.parametrize("name", ["accumulator", "mapper", "map_server"])
def test_the_settings_file_lists_every_declared_parameter_with_its_default(name,
                                                                           rclpy_context):
    documented = yaml.safe_load((REPO_ROOT / "config/mapping.yaml").read_text())
    documented = documented[f"/**/{name}"]["ros__parameters"]
    node = _make(name)
    try:
        declared = _declared(node)
    finally:
        node.destroy_node()
    assert sorted(set(declared) - set(documented)) == [], "declared, not in mapping.yaml"
    assert sorted(set(documented) - set(declared)) == [], "in mapping.yaml, not declared"
    if "autostart" in declared:
        declared["autostart"] = True             # as it is when not overridden here
    differ = {k: (documented[k], v) for k, v in declared.items() if documented[k] != v
              and not (isinstance(v, float) and documented[k] == pytest.approx(v))}
    assert differ == {}, "mapping.yaml value != the node's default"


def test_the_settings_file_is_the_rendering_of_the_settings_tree():
    """Regenerate with: python -m stseg_ros.ros.settings > config/mapping.yaml"""
    from stseg_ros.ros.settings import render_params_file

    assert (REPO_ROOT / "config/mapping.yaml").read_text() == render_params_file(), (
        "config/mapping.yaml is not what the settings tree renders; regenerate it: "
        "python -m stseg_ros.ros.settings > config/mapping.yaml")


def test_every_parameter_has_a_description_and_ranges_and_choices_are_said():
    from stseg_ros.core.fields import describe_field, field_rule
    from stseg_ros.ros.settings import NODES

    for node, sections in NODES.items():
        for s in sections:
            for f in s.fields:
                text = describe_field(s.cls, f.name)
                assert text, f"{node} {s.prefix}{f.name} has no comment"
                rule = field_rule(f)
                if rule is not None:
                    assert text.endswith(rule.describe())


def test_the_nodes_stage_sections_are_the_run_config_sections_of_the_same_name():
    """Each prefixed section of the mapper and the accumulator is a section of
    the offline settings tree (``stseg run --set``): the same dataclass, keys
    among its keys; together they cover every stage setting but the scan
    source's (the nodes' input is the camera) and the drift tuples."""
    from stseg_ros.mapping.config import RunConfig
    from stseg_ros.ros.settings import ACCUMULATOR, MAPPER

    run = {f.name: type(getattr(RunConfig(), f.name)) for f in dataclasses.fields(RunConfig)}
    covered: dict[str, set] = {}
    for s in (*ACCUMULATOR, *MAPPER):
        if not s.prefix:
            continue
        name = s.prefix.rstrip(".")
        assert run[name] is s.cls, f"{name}: {s.cls.__name__} != RunConfig's {run[name]}"
        assert not covered.get(name, set()) & set(s.names), f"{name} keys on both nodes"
        covered.setdefault(name, set()).update(s.names)
    for name, cls in run.items():
        if name == "source":
            continue
        keys = {f.name for f in dataclasses.fields(cls) if not isinstance(f.default, tuple)}
        missing = keys - covered.get(name, set()) - ({"pixel_stride"} if name == "drift" else set())
        assert missing == set(), f"{name}: not a parameter of either node"


def test_the_mapper_takes_the_stage_settings_stseg_run_takes(rclpy_context, tmp_path):
    node = _make("mapper", **{"segmentation.segmenter": "geometric",
                              "db_path": str(tmp_path / "m.db"),
                              "registration.min_fitness": 0.6, "levelling.up": "-y"})
    try:
        node.trigger_configure()
        assert node.state == "inactive"
        assert node.stages["registration"].min_fitness == 0.6
        assert node.stages["levelling"].up == "-y"
        assert node._segmenter.name == "geometric"       # noqa: SLF001
    finally:
        node.destroy_node()


def test_declared_ranges_refuse_values_out_of_range(rclpy_context):
    """As ``ros2 param set`` does it: refused with the range, the value kept."""
    node = _make("mapper")
    try:
        d = node.describe_parameter("registration.min_fitness")
        assert (d.floating_point_range[0].from_value, d.floating_point_range[0].to_value) == (0, 1)
        assert "in [0, 1]" in d.description
        d = node.describe_parameter("registration.ransac_iterations")
        assert d.integer_range[0].from_value == 1 and d.integer_range[0].to_value == 2**63 - 1
        assert math.isinf(node.describe_parameter("registration.voxel")
                          .floating_point_range[0].to_value)
        assert "one of: cpu, cuda" in node.describe_parameter("segmentation.device").description
        for name, bad, good in (("registration.min_fitness", 1.5, 0.5),
                                ("registration.ransac_iterations", 0, 10),
                                ("registration.voxel", -0.1, 0.1)):
            result, = node.set_parameters([Parameter(name, value=bad)])
            assert not result.successful and "out of range" in result.reason
            assert node.get_parameter(name).value != bad
            result, = node.set_parameters([Parameter(name, value=good)])
            assert result.successful
    finally:
        node.destroy_node()


@pytest.mark.parametrize(("name", "key", "bad", "good", "reason"), [
    ("mapper", "registration.min_fitness", 2.0, 0.5,
     "registration.min_fitness: 2.0 is not in [0, 1]"),
    ("mapper", "registration.min_fitness", 2, 0.5,      # -p ...:=2 is an integer
     "registration.min_fitness: 2.0 is not in [0, 1]"),
    ("mapper", "registration.voxel", 0.0, 0.05, "registration.voxel: 0.0 is not > 0"),
    ("mapper", "segmentation.device", "gpu", "cpu",
     "segmentation.device: 'gpu' is not one of: cpu, cuda"),
    ("mapper", "segmentation.segmenter", "magic", "geometric",
     "segmentation.segmenter: 'magic' is not one of: \"\", geometric"),
    ("accumulator", "image_queue_depth", 0, 60, "image_queue_depth: 0 is not >= 1"),
    ("accumulator", "source.max_pair_gap_s", -1.0, 0.02,
     "source.max_pair_gap_s: -1.0 is not >= 0"),
    ("accumulator", "depth_transport", "compressed", "compressedDepth",
     "depth_transport: 'compressed' is not one of: raw, compressedDepth"),
    ("accumulator", "pose_source", "gps", "odometry",
     "pose_source: 'gps' is not one of: tf, odometry"),
])
def test_a_value_out_of_range_fails_configure_naming_the_parameter(name, key, bad, good, reason,
                                                                   rclpy_context, tmp_path):
    """Given at start (-p, a params file): configure fails with the reason in
    the words stseg run uses, and a value that fits (ros2 param set) fixes it;
    the parameter has its range from then on."""
    params = {key: bad}
    if name == "mapper":
        params = {"db_path": str(tmp_path / "m.db"), "segmentation.segmenter": "geometric",
                  **params}
    node = _make(name, **params)
    try:
        node.trigger_configure()
        assert node.state == "unconfigured"
        assert reason in node.transition_error
        assert not (tmp_path / "m.db").exists()
        assert node.set_parameters([Parameter(key, value=good)])[0].successful
        node.trigger_configure()
        assert node.state == "inactive"
        d = node.describe_parameter(key)
        assert d.floating_point_range or d.integer_range or isinstance(good, str)
    finally:
        node.destroy_node()


def test_map_server_refuses_a_value_out_of_range(rclpy_context):
    from stseg_ros.core.fields import SettingError

    with pytest.raises(SettingError, match="epoch_period: -1.0 is not >= 0"):
        _make("map_server", epoch_period=-1.0)


@pytest.mark.parametrize(("sets", "message"), [
    (["registration.min_fitness=2"], "registration.min_fitness: 2.0 is not in [0, 1]"),
    (["registration.ransac_iterations=0"], "registration.ransac_iterations: 0 is not >= 1"),
    (["fusion.voxel=0"], "fusion.voxel: 0.0 is not > 0"),
    (["segmentation.device=gpu"], "segmentation.device: 'gpu' is not one of: cpu, cuda"),
    (["source.pose_source=gps"], "source.pose_source: 'gps' is not one of: auto, tf, odometry"),
])
def test_an_out_of_range_set_is_a_config_error(sets, message):
    from stseg_ros.mapping.config import ConfigError, load_config

    with pytest.raises(ConfigError) as err:
        load_config(sets=sets)
    assert str(err.value) == message


def test_stseg_run_reports_an_out_of_range_set_in_one_line(tmp_path, capsys):
    from stseg_ros.cli import main

    code = main(["run", str(tmp_path / "scan.npz"), "--out", str(tmp_path / "out"),
                 "--set", "registration.min_fitness=2"])
    err = capsys.readouterr().err
    assert code == 2
    assert err == "stseg run: registration.min_fitness: 2.0 is not in [0, 1]\n"


def test_a_config_file_out_of_range_is_refused(tmp_path):
    from stseg_ros.mapping.config import ConfigError, load_config

    path = tmp_path / "run.yaml"
    path.write_text("association:\n  min_overlap: 1.5\n")
    with pytest.raises(ConfigError, match=r"association.min_overlap: 1.5 is not in \[0, 1\]"):
        load_config(path)


def test_the_segmenter_choices_are_the_registry_and_the_backends_the_sparse_ones():
    from stseg_ros.core.fields import field_rule
    from stseg_ros.mapping.config import SegmentationConfig
    from stseg_ros.mapping.segmenter import SEGMENTERS
    from stseg_ros.sparse.backend import BACKENDS

    rules = {f.name: field_rule(f) for f in dataclasses.fields(SegmentationConfig)}
    assert rules["segmenter"].choices == ("", *SEGMENTERS)
    assert rules["sparse_backend"].choices == BACKENDS


def test_launch_overrides_are_typed_checked_and_only_the_given_ones():
    from stseg_ros.core.fields import SettingError
    from stseg_ros.ros.settings import LAUNCH_ARGUMENTS, launch_overrides, parameters

    for argument, (node, name) in LAUNCH_ARGUMENTS.items():
        assert name in parameters(node), argument
    assert launch_overrides({a: "" for a in LAUNCH_ARGUMENTS}) == {"accumulator": {},
                                                                   "mapper": {}}
    got = launch_overrides({"db_path": "/data/m.db", "device": "cuda", "segmenter": "",
                            "pose_source": "odometry", "namespace": "robot1"})
    assert got == {"mapper": {"db_path": "/data/m.db", "segmentation.device": "cuda"},
                   "accumulator": {"pose_source": "odometry"}}
    with pytest.raises(SettingError, match="device: 'gpu' is not one of: cpu, cuda"):
        launch_overrides({"device": "gpu"})


def test_field_comments_go_on_over_continuation_lines_but_not_group_comments():
    from stseg_ros.core.fields import field_comments
    from stseg_ros.mapping.registration import RegistrationConfig
    from stseg_ros.ros.settings import MapperNodeConfig

    comments = field_comments(RegistrationConfig)
    assert comments["min_margin"] == "coarse fitness lead over the best different alternative"
    assert "calibrated" not in comments["min_fitness"]           # the group's comment above
    assert field_comments(MapperNodeConfig)["db_path"].endswith("refused and left untouched")
