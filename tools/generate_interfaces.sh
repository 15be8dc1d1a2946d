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

# Build a stand-in interface package NAME from the .msg files in MSG_DIR into
# the venv, for a ROS 2 interface package the package index does not have. Its
# package.xml and CMakeLists.txt are written here, into the build folder, so the
# source tree never holds a second package for colcon or rosdep to find.
#   standin_package NAME MSG_DIR "DESCRIPTION" DEPENDENCY...
standin_package() {
  local name=$1 msgs=$2 description=$3
  shift 3
  local dir="$venv/build/$name" deps="" files="" m
  for m in "$@"; do deps+="  <depend>$m</depend>"$'\n'; done
  mkdir -p "$dir/src/msg"
  rm -f "$dir/src/msg/"*.msg
  cp -p "$msgs"/*.msg "$dir/src/msg/"   # -p: unchanged definitions are not rebuilt
  for m in "$dir/src/msg/"*.msg; do files+=" \"msg/$(basename "$m")\""; done
  cat >"$dir/src/package.xml" <<XML
<?xml version="1.0"?>
<package format="3">
  <name>$name</name>
  <version>0.0.0</version>
  <description>$description (stseg_ros stand-in)</description>
  <maintainer email="maintainers@stseg-ros.org">stseg_ros maintainers</maintainer>
  <license>Apache-2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
$deps  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
XML
  cat >"$dir/src/CMakeLists.txt" <<CMAKE
cmake_minimum_required(VERSION 3.16)
project($name)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
$(for m in "$@"; do echo "find_package($m REQUIRED)"; done)
rosidl_generate_interfaces(\${PROJECT_NAME}$files DEPENDENCIES $*)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
CMAKE
  cmake -S "$dir/src" -B "$dir/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$venv" -DPython3_EXECUTABLE="$python" \
    -DPython3_FIND_VIRTUALENV=ONLY -DBUILD_TESTING=OFF >"$dir.log" 2>&1 || { cat "$dir.log"; exit 1; }
  ninja -C "$dir/build" install >>"$dir.log" 2>&1 || { tail -50 "$dir.log"; exit 1; }
}

# A stand-in is (re)generated where the package is missing, or where the venv
# already holds the stand-in (so edited definitions take effect); a real
# package, from a ROS installation or the index, is left alone.
needs_standin() {
  ! "$python" -c "import $1.msg" 2>/dev/null ||
    grep -qs 'stseg_ros stand-in' "$venv/share/$1/package.xml"
}

# tf2_msgs (the type of /tf and /tf_static) is not on the package index; its
# message definition is a single line.
if needs_standin tf2_msgs; then
  tf2_src="$venv/build/tf2_msgs_msg"
  mkdir -p "$tf2_src"
  echo 'geometry_msgs/TransformStamped[] transforms' >"$tf2_src/TFMessage.msg"
  standin_package tf2_msgs "$tf2_src" "TFMessage only, for a ROS-less virtual environment" \
    geometry_msgs
fi

# vision_msgs (~/detections) is not on the package index either; the
# definitions in interfaces/vision_msgs follow upstream vision_msgs 4.x.
if needs_standin vision_msgs; then
  standin_package vision_msgs "$root/interfaces/vision_msgs/msg" \
    "Detection3DArray and the types it holds, after vision_msgs 4.x" std_msgs geometry_msgs
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
