"""Declaring a node's parameters from a dataclass config: every field becomes
a parameter of the same name, type and default, with its description (the
field's own comment, ``core.fields``, unless the node words it itself).

Managed nodes declare their parameters when they are created (so a lifecycle
manager or ``ros2 param set`` can change them while the node is unconfigured)
and read them in ``on_configure``: ``declare_fields`` then ``read_config``."""

from __future__ import annotations

import dataclasses

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from stseg_ros.core.fields import field_comments


def declare_fields(node: Node, cls, descriptions: dict[str, str] | None = None,
                   prefix: str = "", skip: tuple[str, ...] = ()) -> None:
    """Declare a parameter for every field of the dataclass ``cls`` but those in
    ``skip`` (tuples stay at their defaults and are not parameters)."""
    descriptions = {**field_comments(cls), **(descriptions or {})}
    for f in dataclasses.fields(cls):
        default = f.default
        if isinstance(default, tuple) or f.name in skip or node.has_parameter(prefix + f.name):
            continue
        node.declare_parameter(
            prefix + f.name, default,
            ParameterDescriptor(description=descriptions.get(f.name, ""),
                                dynamic_typing=isinstance(default, float)))


def read_config(node: Node, cls, prefix: str = "", skip: tuple[str, ...] = ()):
    """An instance of the frozen dataclass ``cls`` from the node's parameters as
    they are now (declared by ``declare_fields``; ``skip``: left at defaults)."""
    values = {}
    for f in dataclasses.fields(cls):
        if isinstance(f.default, tuple) or f.name in skip:
            continue
        values[f.name] = type(f.default)(node.get_parameter(prefix + f.name).value)
    return cls(**values)


def declare_config(node: Node, cls, descriptions: dict[str, str] | None = None,
                   prefix: str = ""):
    """An instance of the frozen dataclass ``cls`` from the node's parameters."""
    declare_fields(node, cls, descriptions, prefix)
    return read_config(node, cls, prefix)
