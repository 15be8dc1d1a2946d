#!/usr/bin/env bash
# Generate the msg/ and srv/ interfaces of stseg_ros into a virtual environment
# with the rosidl toolchain from the package index (no ROS installation).
#
# Usage: tools/generate_interfaces.sh VENV_DIR
#
# The wheels' exported CMake files hard-code the Python and numpy include paths
# of the machine that built them (/opt/python/cp311-cp311/...); they are
# rewritten to this interpreter's before CMake reads them.
set -euo pipefail

venv=$(cd "${1:?usage: $0 VENV_DIR}" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
python="$venv/bin/python"
build="$venv/build/stseg_ros_interfaces"

py_include=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
np_include=$("$python" -c 'import numpy; print(numpy.get_include())')
py_prefix=$("$python" -c 'import sys; print(sys.base_prefix)')

# Rewrite the build machine's paths; idempotent (a second run finds none).
grep -rlZ --include='*.cmake' '/opt/python/cp311-cp311' "$venv/share" 2>/dev/null |
  xargs -0 -r sed -i \
    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#${np_include}#g" \
    -e "s#/opt/python/cp311-cp311/include/python3.11#${py_include}#g" \
    -e "s#/opt/python/cp311-cp311#${py_prefix}#g" || true

export AMENT_PREFIX_PATH="$venv"
export CMAKE_PREFIX_PATH="$venv"
export PATH="$venv/bin:$PATH"

# tf2_msgs (the type of /tf and /tf_static) is not on the package index. Where
# it is missing, it is generated here from its message definition, which is a
# single line; a ROS installation provides the real package instead.
if ! "$python" -c 'import tf2_msgs.msg' 2>/dev/null; then
  tf2="$venv/build/tf2_msgs"
  mkdir -p "$tf2/src/msg"
  echo 'geometry_msgs/TransformStamped[] transforms' >"$tf2/src/msg/TFMessage.msg"
  cat >"$tf2/src/package.xml" <<'XML'
<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.0.0</version>
  <description>TFMessage only, generated for a ROS-less virtual environment.</description>
  <maintainer email="maintainers@stseg-ros.org">stseg_ros maintainers</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
XML
  cat >"$tf2/src/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.16)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(geometry_msgs REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
CMAKE
  cmake -S "$tf2/src" -B "$tf2/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$python" \
    -DPython3_FIND_VIRTUALENV=ONLY -DBUILD_TESTING=OFF >"$tf2.log" 2>&1 || { cat "$tf2.log"; exit 1; }
  ninja -C "$tf2/build" install >>"$tf2.log" 2>&1 || { tail -50 "$tf2.log"; exit 1; }
fi

mkdir -p "$build"
cmake -S "$root" -B "$build" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_INSTALL_PREFIX="$venv" \
  -DPython3_EXECUTABLE="$python" \
  -DPython3_FIND_VIRTUALENV=ONLY \
  -DSTSEG_INTERFACES_ONLY=ON \
  -DBUILD_TESTING=OFF >"$build.log" 2>&1 || { cat "$build.log"; exit 1; }
ninja -C "$build" install >>"$build.log" 2>&1 || { tail -50 "$build.log"; exit 1; }

# The generator writes its own stseg_ros/__init__.py into site-packages; the
# editable source package must win, and extends its __path__ to the generated
# msg/srv modules (see stseg_ros/__init__.py).
site=$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
# Its egg-info would make pip take the generated files for an old install of
# stseg_ros and delete them on the next editable install.
rm -rf "$site/stseg_ros/__init__.py" "$site"/stseg_ros-*.egg-info
echo "interfaces generated into $venv"
