"""The accumulator and the mapper composed in one process (``ros2 run
stseg_ros mapping``), on one executor thread as ``executor.spin_nodes`` runs
them; each node also runs on its own (``accumulator``, ``mapper``)."""

from __future__ import annotations

import sys

from stseg_ros.ros.accumulator_node import AccumulatorNode
from stseg_ros.ros.executor import spin_nodes
from stseg_ros.ros.mapper_node import MapperNode


def main() -> int:
    return spin_nodes(AccumulatorNode, MapperNode)


if __name__ == "__main__":
    sys.exit(main())
