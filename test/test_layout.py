"""The repository is a ROS 2 package laid out as users and colcon expect."""

from __future__ import annotations

import pytest
from conftest import REPO_ROOT

REQUIRED = [
    "stseg_ros/__init__.py", "stseg_ros/core", "stseg_ros/ros", "launch/mapping.launch.py",
    "msg", "srv", "config/mapping.yaml", "test", "package.xml", "setup.py", "setup.cfg",
    "README.md", "CMakeLists.txt", "Makefile", ".ci/run",
]


@pytest.mark.parametrize("item", REQUIRED)
def test_required_item_exists(item):
    assert (REPO_ROOT / item).exists(), f"{item} is missing from the package layout"


def test_every_interface_is_generated_by_cmake():
    cmake = (REPO_ROOT / "CMakeLists.txt").read_text()
    files = sorted(REPO_ROOT.glob("msg/*.msg")) + sorted(REPO_ROOT.glob("srv/*.srv"))
    assert files
    for f in files:
        rel = f.relative_to(REPO_ROOT).as_posix()
        assert f'"{rel}"' in cmake, f"{rel} is not listed in rosidl_generate_interfaces"


def test_ci_runs_make_test():
    script = (REPO_ROOT / ".ci/run").read_text()
    assert "make test" in script
    assert "ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST" in script
