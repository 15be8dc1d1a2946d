"""package.xml parses and declares every runtime dependency the code imports."""

from __future__ import annotations

import ast
import configparser
import sys

from catkin_pkg.package import parse_package
from conftest import REPO_ROOT

# Python import name -> rosdep key of the package that provides it.
ROSDEP_KEY = {
    "rclpy": "rclpy", "launch": "launch", "launch_ros": "launch_ros",
    "ament_index_python": "ament_index_python",
    "builtin_interfaces": "builtin_interfaces", "std_msgs": "std_msgs",
    "std_srvs": "std_srvs", "geometry_msgs": "geometry_msgs", "sensor_msgs": "sensor_msgs",
    "visualization_msgs": "visualization_msgs", "nav_msgs": "nav_msgs",
    "diagnostic_msgs": "diagnostic_msgs", "rcl_interfaces": "rcl_interfaces",
    "tf2_msgs": "tf2_msgs", "rosgraph_msgs": "rosgraph_msgs", "vision_msgs": "vision_msgs",
    "numpy": "python3-numpy", "scipy": "python3-scipy", "sklearn": "python3-sklearn",
    "yaml": "python3-yaml", "tqdm": "python3-tqdm", "matplotlib": "python3-matplotlib",
    "open3d": "python3-open3d-pip", "torch": "python3-torch", "rosbags": "python3-rosbags-pip",
    "sqlite_utils": "python3-sqlite-utils-pip", "PIL": "python3-pil",
}
# Dependencies that come with another declared one. rosbags requires lz4 and
# backports.zstd (MCAP chunk compression; `compression` is Python 3.14's zstd).
IMPLIED = {"ament_index_python": "launch_ros", "rcl_interfaces": "rclpy",
           "lz4": "python3-rosbags-pip", "backports": "python3-rosbags-pip",
           "compression": "python3-rosbags-pip"}
# Optional backends, imported only when asked for; no rosdep key exists.
OPTIONAL = {"MinkowskiEngine", "MinkowskiEngineBackend"}


def _imported_top_level_modules() -> set[str]:
    names: set[str] = set()
    files = [*(REPO_ROOT / "stseg_ros").rglob("*.py"), *(REPO_ROOT / "launch").glob("*.py")]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"stseg_ros", "__future__"}


def test_package_xml_parses_with_matching_metadata():
    package = parse_package(str(REPO_ROOT / "package.xml"))
    cfg = configparser.ConfigParser()
    cfg.read(REPO_ROOT / "setup.cfg")
    assert package.name == cfg["metadata"]["name"] == "stseg_ros"
    assert package.version == cfg["metadata"]["version"]
    assert package.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [g.name for g in package.member_of_groups]


def test_runtime_dependencies_cover_every_import():
    package = parse_package(str(REPO_ROOT / "package.xml"))
    declared = {d.name for d in package.exec_depends + package.build_export_depends}
    imported = _imported_top_level_modules() - OPTIONAL
    unknown = imported - ROSDEP_KEY.keys() - IMPLIED.keys()
    assert not unknown, f"no rosdep key known for imports {sorted(unknown)}: add them here"
    missing = sorted(
        ROSDEP_KEY[m] for m in imported
        if ROSDEP_KEY.get(m) not in declared and IMPLIED.get(m) not in declared)
    assert not missing, f"package.xml lacks exec dependencies {missing}"


def test_interface_dependencies_are_build_and_runtime_dependencies():
    package = parse_package(str(REPO_ROOT / "package.xml"))
    build = {d.name for d in package.build_depends}
    run = {d.name for d in package.exec_depends + package.build_export_depends}
    text = "\n".join(p.read_text() for p in REPO_ROOT.glob("*/*.msg")) + "\n".join(
        p.read_text() for p in REPO_ROOT.glob("*/*.srv"))
    for pkg in ("std_msgs", "geometry_msgs"):
        assert f"{pkg}/" in text
        assert pkg in build and pkg in run


def test_vision_msgs_stand_in_is_no_package():
    """interfaces/ holds message definitions only: colcon and rosdep must take
    vision_msgs from the workspace or ROS installation, never from this tree."""
    manifests = {"package.xml", "CMakeLists.txt", "setup.py", "setup.cfg", "pyproject.toml"}
    found = [p for p in (REPO_ROOT / "interfaces").rglob("*") if p.name in manifests]
    assert not found, f"a build tool would take these for a package: {found}"
    assert sorted(p.stem for p in (REPO_ROOT / "interfaces/vision_msgs/msg").glob("*.msg")) == [
        "BoundingBox3D", "Detection3D", "Detection3DArray", "ObjectHypothesis",
        "ObjectHypothesisWithPose"]
    assert "interfaces/" not in (REPO_ROOT / "CMakeLists.txt").read_text()
    package = parse_package(str(REPO_ROOT / "package.xml"))
    assert "vision_msgs" in {d.name for d in package.build_depends}
