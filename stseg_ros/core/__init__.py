"""ROS-free core library shared by the CLI, the tests and the ROS nodes."""
