"""CPU load beside the nodes: the benches and the tests that must hold on a
busy machine run their work next to these."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def cpu_hogs(count: int) -> Iterator[list[subprocess.Popen]]:
    """``count`` busy-loop processes for the duration of the block."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(max(0, count))]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
