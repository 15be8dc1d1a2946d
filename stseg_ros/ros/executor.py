"""Running nodes: each on its own (``ros2 run stseg_ros accumulator``) or
composed in one process (``ros2 run stseg_ros mapping``).

One thread spins: no callback of these nodes blocks (heavy work runs on
their worker threads, and a service that waits for a worker awaits
``next_spin``). rclpy's MultiThreadedExecutor is not used because in the
Kilted wheels it re-polls queued callbacks in a busy loop: with a 30 Hz
RGB-D stream the accumulator took a whole core with it and 0.2 cores with
the single-threaded executor (``stseg bench ingest``)."""

from __future__ import annotations

import signal
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


class NodeFailedError(RuntimeError):
    """A node's worker died; raised on the executor thread to end the process."""


def spin_nodes(*factories) -> int:
    """Run nodes in one process on one executor thread until Ctrl-C; a bad
    parameter or file, or a node whose worker died (``NodeFailedError``), ends it
    with the reason and exit code 1. A Ctrl-C that lands while the nodes or the
    executor start is a clean exit (0), whatever rclpy raised for it."""
    rclpy.init(args=sys.argv)
    nodes = []
    try:
        for make in factories:
            nodes.append(make())
            if not rclpy.ok():      # Ctrl-C while the nodes started: a clean exit
                return 0
        executor = SingleThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, RuntimeError) as err:   # a bad parameter or database: say why
        if not rclpy.ok() and not isinstance(err, NodeFailedError):
            return 0    # Ctrl-C shut rclpy down as the executor began: rclpy's error
        print(f"{err}", file=sys.stderr)
        return 1
    finally:
        # Ctrl-C under ros2 launch reaches the nodes twice (from the terminal and
        # from launch); the second must not cut the clean shutdown short. Launch
        # escalates to SIGTERM if it takes too long.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0


class _NextSpin:
    def __await__(self):
        yield


def next_spin() -> _NextSpin:
    """``await next_spin()`` in an async callback: let the executor run other
    callbacks and resume this one on its next turn."""
    return _NextSpin()
