"""The ament_cmake route that `colcon build` takes: configure, build and install
the package with CMake, then use the installed tree on its own."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

SOURCES = ["CMakeLists.txt", "package.xml", "setup.cfg", "setup.py", "msg", "srv",
           "stseg_ros", "launch", "config", "rviz"]


@pytest.fixture(scope="module")
def install_tree(tmp_path_factory) -> Path:
    if not shutil.which("cmake") or not shutil.which("ninja"):
        pytest.fail("cmake and ninja are required (make test installs them)")
    root = tmp_path_factory.mktemp("colcon")
    src, build, install = root / "src" / "stseg_ros", root / "build", root / "install"
    src.mkdir(parents=True)
    for item in SOURCES:
        copy = shutil.copytree if (REPO_ROOT / item).is_dir() else shutil.copy2
        copy(REPO_ROOT / item, src / item)
    shutil.rmtree(src / "stseg_ros" / "__pycache__", ignore_errors=True)
    venv = Path(sys.prefix)
    env = dict(os.environ, AMENT_PREFIX_PATH=str(venv), CMAKE_PREFIX_PATH=str(venv),
               PATH=f"{venv / 'bin'}:{os.environ['PATH']}")
    for cmd in (["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja",
                 f"-DCMAKE_INSTALL_PREFIX={install}", f"-DPython3_EXECUTABLE={sys.executable}",
                 "-DBUILD_TESTING=OFF"],
                ["ninja", "-C", str(build), "install"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return install


def _installed_env(install: Path) -> dict[str, str]:
    site = install / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return dict(os.environ, PYTHONPATH=str(site / "site-packages"),
                LD_LIBRARY_PATH=f"{install / 'lib'}:{os.environ.get('LD_LIBRARY_PATH', '')}",
                AMENT_PREFIX_PATH=f"{install}:{sys.prefix}")


def test_install_tree_has_executables_launch_and_config(install_tree):
    assert (install_tree / "bin" / "stseg").is_file()
    for node in ("map_server", "accumulator", "mapper", "mapping"):
        assert os.access(install_tree / "lib" / "stseg_ros" / node, os.X_OK), node
    share = install_tree / "share" / "stseg_ros"
    for item in ("package.xml", "launch/mapping.launch.py", "config/mapping.yaml",
                 "rviz/stseg.rviz", "msg/RevisitScan.msg",
                 "msg/ObjectInstance.msg", "srv/QueryObjects.srv"):
        assert (share / item).is_file(), item


def test_installed_package_imports_sources_and_interfaces_from_one_place(install_tree):
    code = ("import stseg_ros.cli, stseg_ros.msg, stseg_ros.srv;"
            "from ament_index_python.packages import get_package_share_directory as g;"
            "print(stseg_ros.cli.__file__); print(stseg_ros.msg.__file__);"
            "print(g('stseg_ros'))")
    out = subprocess.run([sys.executable, "-c", code], env=_installed_env(install_tree),
                         cwd=install_tree, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    cli_file, msg_file, share = out.stdout.split()
    assert cli_file.startswith(str(install_tree)) and msg_file.startswith(str(install_tree))
    assert share == str(install_tree / "share" / "stseg_ros")


def test_installed_cli_runs(install_tree):
    out = subprocess.run([sys.executable, str(install_tree / "bin" / "stseg"), "--version"],
                         env=_installed_env(install_tree), cwd=install_tree,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("stseg_ros 0.1.0")


def test_install_uses_the_underlays_vision_msgs(install_tree):
    """The CMake build leaves the pip set-up's vision_msgs stand-in alone: the
    install tree holds no vision_msgs, and ~/detections' type comes from the
    underlay (a ROS installation, here the venv)."""
    assert not (install_tree / "share" / "vision_msgs").exists()
    code = ("import stseg_ros.ros.map_publisher, vision_msgs.msg;"
            "print(stseg_ros.ros.map_publisher.__file__); print(vision_msgs.msg.__file__)")
    out = subprocess.run([sys.executable, "-c", code], env=_installed_env(install_tree),
                         cwd=install_tree, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    publisher_file, vision_file = out.stdout.split()
    assert publisher_file.startswith(str(install_tree))
    assert not vision_file.startswith(str(install_tree))
