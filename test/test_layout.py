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


def _runtime_imports(tree) -> list[str]:
    """Modules a file imports when it runs (``if TYPE_CHECKING:`` blocks left out)."""
    import ast

    found: list[str] = []

    def visit(node) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend([node.module, *(f"{node.module}.{a.name}" for a in node.names)])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def test_no_module_of_the_package_imports_one_that_imports_it_back():
    """Import cycles, even through imports inside functions, tie modules that
    should stand apart (a segmenter and its registry, nodes and their runner)."""
    import ast

    package = REPO_ROOT / "stseg_ros"
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {name: {m for m in _runtime_imports(ast.parse(path.read_text()))
                    if m in modules and m != name}
             for name, path in modules.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            name = todo.pop()
            if name == goal:
                return True
            if name not in seen:
                seen.add(name)
                todo.extend(graph[name])
        return False

    on_a_cycle = sorted(f"{a} -> {b}" for a in graph for b in graph[a] if reaches(b, a))
    assert not on_a_cycle, on_a_cycle
