"""Running nodes: each on its own (``ros2 run stseg_ros accumulator``) or
composed in one process (``ros2 run stseg_ros mapping``), on a multi-threaded
executor so that services answer while messages are handled."""

from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor


def spin_nodes(*factories) -> int:
    """Run nodes in one process on a multi-threaded executor until Ctrl-C."""
    rclpy.init(args=sys.argv)
    nodes = []
    try:
        for make in factories:
            nodes.append(make())
        executor = MultiThreadedExecutor(num_threads=4)
        for node in nodes:
            executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, RuntimeError) as err:   # a bad parameter or database: say why
        print(f"{err}", file=sys.stderr)
        return 1
    finally:
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    return 0



def composed_main() -> int:
    """The accumulator and the mapper in one process."""
    from stseg_ros.ros.accumulator_node import AccumulatorNode
    from stseg_ros.ros.mapper_node import MapperNode

    return spin_nodes(AccumulatorNode, MapperNode)


if __name__ == "__main__":
    sys.exit(composed_main())
