"""Declaring a node's parameters from a dataclass config: every field becomes
a parameter of the same name, type and default, with its description."""

from __future__ import annotations

import dataclasses

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node


def declare_config(node: Node, cls, descriptions: dict[str, str], prefix: str = ""):
    """An instance of the frozen dataclass ``cls`` from the node's parameters."""
    values = {}
    for f in dataclasses.fields(cls):
        default = f.default
        if isinstance(default, tuple):
            continue                     # tuples stay at their defaults
        value = node.declare_parameter(
            prefix + f.name, default,
            ParameterDescriptor(description=descriptions.get(f.name, ""),
                                dynamic_typing=isinstance(default, float))).value
        values[f.name] = type(default)(value)
    return cls(**values)
