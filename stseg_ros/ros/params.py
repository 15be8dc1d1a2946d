"""Declaring and reading a node's parameters from sections of its settings
tree (``core.fields.Section``, ``ros.settings``): every field becomes a
parameter ``prefix + name`` of the same type and default, described by the
field's comment and range or choices, with the range in its
``ParameterDescriptor`` (so ``ros2 param set`` refuses values out of it).

Managed nodes declare their parameters when they are created (so a lifecycle
manager or ``ros2 param set`` can change them while the node is unconfigured)
and read them in ``on_configure``: ``declare_fields`` then ``read_config``,
which checks every value with ``core.fields.check_value``, the check
``stseg run --set`` uses: a value out of range fails configure with the
parameter, the value and the range."""

from __future__ import annotations

import math

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node

from stseg_ros.core.fields import Section, SettingError, check_value, describe_field, field_rule

INT64 = (-2**63, 2**63 - 1)


def descriptor(s: Section, f, with_range: bool = True) -> ParameterDescriptor:
    """The descriptor of field ``f`` of section ``s``: its description, and its
    range (closed, as ROS ranges are: ``above=0`` is ``[0, ...]`` here and the
    0 itself is refused by ``read_config``)."""
    rule = field_rule(f)
    d = ParameterDescriptor(description=describe_field(s.cls, f.name),
                            additional_constraints=rule.describe() if rule else "",
                            dynamic_typing=isinstance(f.default, float))
    if not with_range or rule is None or rule.choices is not None or isinstance(f.default, bool):
        return d
    low = rule.low if rule.low is not None else rule.above
    if isinstance(f.default, int):
        if rule.above is not None and rule.low is None:
            low = math.floor(rule.above) + 1
        d.integer_range = [IntegerRange(
            from_value=int(low) if low is not None else INT64[0],
            to_value=int(rule.high) if rule.high is not None else INT64[1], step=0)]
    elif isinstance(f.default, float):
        d.floating_point_range = [FloatingPointRange(
            from_value=float(low) if low is not None else -math.inf,
            to_value=float(rule.high) if rule.high is not None else math.inf, step=0.0)]
    return d


def declare_fields(node: Node, s: Section) -> None:
    """Declare a parameter for every field of section ``s`` (those declared
    already are kept, with their values). A parameter is first declared
    without its range, then given it once its value (a ``-p`` override or a
    params file's) fits: one that does not is left to ``read_config`` to
    report, in the words ``stseg run`` uses, instead of failing the
    declaration, and setting a fitting value (``ros2 param set``) fixes it."""
    for f in s.fields:
        name = s.prefix + f.name
        full = descriptor(s, f)
        if not node.has_parameter(name):
            node.declare_parameter(name, f.default, descriptor(s, f, with_range=False))
        if not (full.integer_range or full.floating_point_range):
            continue
        current = node.describe_parameter(name)
        if current.integer_range or current.floating_point_range:
            continue
        try:
            check_value(f, node.get_parameter(name).value, name)
        except SettingError:
            continue                        # read_config says why
        full.type = current.type
        node.set_descriptor(name, full)


def read_config(node: Node, s: Section):
    """An instance of the section's frozen dataclass from the node's parameters
    as they are now (declared by ``declare_fields``; fields outside the
    section at their defaults), each value checked against its range or
    choices (``SettingError`` naming the parameter if it does not fit)."""
    values = {f.name: check_value(f, node.get_parameter(s.prefix + f.name).value,
                                  s.prefix + f.name) for f in s.fields}
    return s.cls(**values)


def declare_sections(node: Node, sections) -> None:
    for s in sections:
        declare_fields(node, s)


def read_sections(node: Node, sections) -> dict:
    """dataclass -> its instance, for each of ``sections`` (one per dataclass)."""
    return {s.cls: read_config(node, s) for s in sections}
