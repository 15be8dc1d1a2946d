"""Thin ROS 2 layer: message conversion, nodes and scheduling around the core."""
