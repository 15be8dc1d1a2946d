# Two commands set everything up on a fresh Debian 12 / Python 3.11 machine
# without ROS:  `make test` (whole suite) and `make demo` (the main job).
# Each step leaves a stamp in $(VENV)/.stamps, so a second run only re-does
# what changed.

VENV ?= .venv
PYTHON ?= python3.11
PY := $(VENV)/bin/python
STAMPS := $(VENV)/.stamps
INTERFACES := $(wildcard msg/*.msg srv/*.srv interfaces/*/msg/*.msg)

# Tests and the demo keep DDS discovery on this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: all setup system-deps test lint pytest demo clean

all: test

system-deps:
	@tools/install_system_deps.sh $(PYTHON)

$(PY): | system-deps
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found (set PYTHON=...)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	@# colcon must not take the ROS wheels' share/*/package.xml for packages
	@touch $(VENV)/COLCON_IGNORE

$(STAMPS)/requirements: requirements.txt requirements-build.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-build.txt
	@mkdir -p $(STAMPS) && touch $@

# Editable: edits to stseg_ros/ take effect without reinstalling. "compat"
# mode puts the source root on sys.path, so the source package and the
# generated stseg_ros.msg / stseg_ros.srv modules import as one package.
$(STAMPS)/editable: setup.py setup.cfg $(STAMPS)/requirements
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e . \
	  --config-settings editable_mode=compat
	@touch $@

$(STAMPS)/interfaces: $(INTERFACES) CMakeLists.txt package.xml tools/generate_interfaces.sh \
                      $(STAMPS)/editable | system-deps
	tools/generate_interfaces.sh $(VENV)
	@touch $@

setup: system-deps $(STAMPS)/interfaces

# MinkowskiEngine, the optional sparse backend, for the backend equivalence
# tests: no wheels exist, so pip builds it (CPU only, about 10 min on 2 cores,
# once: pip caches the wheel). It still imports numpy.distutils, which needs
# the standard library's distutils.
$(STAMPS)/minkowski: requirements-minkowski.txt $(STAMPS)/requirements | system-deps
	SETUPTOOLS_USE_DISTUTILS=stdlib MAX_JOBS=$$(nproc) $(PY) -m pip install --quiet \
	  --no-deps --no-build-isolation -r requirements-minkowski.txt
	@touch $@

lint: setup
	$(VENV)/bin/ruff check .

pytest: setup $(STAMPS)/minkowski
	STSEG_REQUIRE_MINKOWSKI=1 $(PY) -m pytest

test: lint pytest

demo: setup
	$(VENV)/bin/stseg demo

clean:
	rm -rf $(VENV) build install log .pytest_cache .ruff_cache
