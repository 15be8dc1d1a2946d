"""pip entry point for a plain virtual environment (`make test` installs it
editable). Under colcon, CMakeLists.txt installs the package instead; the
metadata and executables of both routes come from setup.cfg."""

from setuptools import setup

setup()
