#!/usr/bin/env bash
# Install the Debian packages stseg_ros needs when they are absent (Debian 12).
#   libusb-1.0-0           Open3D's shared library links against it
#   cmake ninja-build g++  generate the msg/srv interfaces
#   python3-venv           create the virtual environment (Debian's own Python)
#   python3-dev            Python.h, for the generated interfaces' C extensions
#   libopenblas-dev        BLAS for building MinkowskiEngine (make test only)
#
# Usage: tools/install_system_deps.sh [PYTHON]   (default python3.11)
set -euo pipefail

python=${1:-python3.11}
packages=(libusb-1.0-0 cmake ninja-build g++ libopenblas-dev)
missing=()
# Debian splits venv/ensurepip and the C headers out of its Python; other
# Python builds (pyenv, conda) ship them and need neither package.
if ! "$python" -c 'import ensurepip' 2>/dev/null; then
  packages+=(python3-venv)
fi
if ! "$python" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
  packages+=(python3-dev)
fi
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "installing Debian packages: ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
