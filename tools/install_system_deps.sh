#!/usr/bin/env bash
# Install the Debian packages stseg_ros needs when they are absent (Debian 12).
#   libusb-1.0-0        Open3D's shared library links against it
#   cmake ninja-build g++  generate the msg/srv interfaces
#   python3-venv        create the virtual environment (system Python only)
set -euo pipefail

packages=(libusb-1.0-0 cmake ninja-build g++)
missing=()
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
