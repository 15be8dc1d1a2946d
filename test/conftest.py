"""Shared test set-up: ROS traffic stays on this machine, in a domain of its own."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ.setdefault("RMW_FASTRTPS_PUBLICATION_MODE", "ASYNCHRONOUS")
# A domain of its own, so concurrent runs on one machine do not see each other;
# 1-100, which ROS advises on Linux: a domain's ports start at 7400 + 250 * id,
# and above 101 they lie among the ephemeral ports (32768-60999) that any
# process's sockets take
os.environ.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))


@pytest.fixture
def rclpy_context():
    """An initialised rclpy for one test, shut down afterwards."""
    import rclpy

    rclpy.init()
    yield rclpy
    rclpy.try_shutdown()


@pytest.fixture
def python() -> str:
    return sys.executable
