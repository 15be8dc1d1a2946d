"""The node executables (``ros2 run stseg_ros mapper``, ``python -m
stseg_ros.ros.entry mapper``).

The node modules import rclpy, PyTorch and Open3D, which takes seconds on a
busy machine. A Ctrl-C in that time (a user changing their mind, launch
stopping everything while a node still starts) ends the process with 0 and
no traceback, as a Ctrl-C after the start does; without this it printed
the interrupted import (Open3D turns it into "ImportError: initialization
failed") and exited with 1 or by the signal.

``kill -USR1 PID`` prints every thread's stack to stderr: where a node that
does not stop is stuck (``stop_process`` asks for it before a SIGKILL)."""

from __future__ import annotations

import faulthandler
import importlib
import signal
import sys

MODULES = {"accumulator": "accumulator_node", "mapper": "mapper_node",
           "mapping": "mapping_node", "map_server": "map_server"}


def _interrupted(err: BaseException | None) -> bool:
    """Whether ``err`` is a Ctrl-C, or an error an extension made of one."""
    while err is not None:
        if isinstance(err, KeyboardInterrupt):
            return True
        err = err.__cause__ or err.__context__
    return False


def run(executable: str) -> int:
    """Import the node module of ``executable`` and run its ``main``. SIGINT
    waits (blocked) until the imports are done: a Ctrl-C in Open3D's import
    killed the process by the signal, with no word."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            main = importlib.import_module(f"stseg_ros.ros.{MODULES[executable]}").main
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})   # a pending one lands
        return main()
    except (KeyboardInterrupt, ImportError) as err:
        if _interrupted(err):
            return 0
        raise


def accumulator() -> int:
    return run("accumulator")


def mapper() -> int:
    return run("mapper")


def mapping() -> int:
    return run("mapping")


def map_server() -> int:
    return run("map_server")


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in MODULES:
        sys.exit(f"usage: python -m stseg_ros.ros.entry {{{','.join(MODULES)}}} "
                 "[--ros-args ...]")
    sys.exit(run(sys.argv.pop(1)))
