"""``config/mapping.yaml`` documents every parameter the nodes declare, with
the value the node would take without it: one settings tree, not two lists
that drift apart. The mapper's stage sections are the ones ``stseg run
--set`` sets, with the stages' own defaults."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from conftest import REPO_ROOT
from rclpy.parameter import Parameter

IMPLICIT = {"use_sim_time", "start_type_description_service"}   # every rclpy node has them


def _declared(node) -> dict:
    return {name: p.value for name, p in node._parameters.items()   # noqa: SLF001
            if name not in IMPLICIT}


@pytest.mark.parametrize("name", ["accumulator", "mapper"])
def test_the_settings_file_lists_every_declared_parameter_with_its_default(name,
                                                                           rclpy_context):
    from stseg_ros.ros.accumulator_node import AccumulatorNode
    from stseg_ros.ros.mapper_node import MapperNode

    documented = yaml.safe_load((REPO_ROOT / "config/mapping.yaml").read_text())
    documented = documented[f"/**/{name}"]["ros__parameters"]
    make = AccumulatorNode if name == "accumulator" else MapperNode
    node = make(parameter_overrides=[Parameter("autostart", value=False)])
    try:
        declared = _declared(node)
    finally:
        node.destroy_node()
    assert sorted(set(declared) - set(documented)) == [], "declared, not in mapping.yaml"
    assert sorted(set(documented) - set(declared)) == [], "in mapping.yaml, not declared"
    declared["autostart"] = True                 # as it is when not overridden here
    differ = {k: (documented[k], v) for k, v in declared.items() if documented[k] != v
              and not (isinstance(v, float) and documented[k] == pytest.approx(v))}
    assert differ == {}, "mapping.yaml value != the node's default"


def test_the_mapper_takes_the_stage_settings_stseg_run_takes(rclpy_context, tmp_path):
    """Each stage section of the offline settings tree but the scan source and
    segmentation (parameters of their own on the nodes) is a mapper parameter
    section of the same keys."""
    from stseg_ros.mapping.config import RunConfig
    from stseg_ros.ros.mapper_node import STAGES, MapperNode

    node = MapperNode(parameter_overrides=[
        Parameter("autostart", value=False), Parameter("segmenter", value="geometric"),
        Parameter("db_path", value=str(tmp_path / "m.db")),
        Parameter("registration.min_fitness", value=0.6)])
    try:
        declared = _declared(node)
        node.trigger_configure()
        assert node.stages["registration"].min_fitness == 0.6
    finally:
        node.destroy_node()
    for prefix, cls, skip in STAGES:
        section = prefix.rstrip(".")
        assert type(getattr(RunConfig(), section)) is cls
        keys = {f.name for f in dataclasses.fields(cls)
                if not isinstance(f.default, tuple) and f.name not in skip}
        assert {k for k in declared if k.startswith(prefix)} == {prefix + k for k in keys}
