"""Launch the stseg_ros mapping nodes (accumulator + mapper) with the
parameters of config/mapping.yaml, and optionally RViz.

    ros2 launch stseg_ros mapping.launch.py [db_path:=FILE] [device:=cpu|cuda]
        [use_sim_time:=true] [namespace:=NS] [rviz:=true] [composed:=true]
        [params_file:=FILE] [autostart:=true|false]

The accumulator and the mapper are managed (lifecycle) nodes. By default they
configure and activate themselves (autostart); autostart:=false leaves them
unconfigured for a lifecycle manager (nav2_lifecycle_manager, or
``ros2 lifecycle set /mapper configure``). The two separate nodes are
launch_ros LifecycleNode actions, so launch sees the transitions made after
they started (by a lifecycle manager, ``ros2 lifecycle set`` or launch's own
ChangeState events); with autostart they configure and activate themselves
before launch listens.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("stseg_ros")
    arg = LaunchConfiguration
    args = [
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the nodes and their topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="follow /clock (rosbag replay)"),
        DeclareLaunchArgument("db_path", default_value="~/.ros/stseg_ros/memory.db",
                              description="SQLite object memory (created or reloaded)"),
        DeclareLaunchArgument("device", default_value="cpu",
                              description="device of learned segmenters: cpu or cuda"),
        DeclareLaunchArgument("rviz", default_value="false",
                              description="start RViz with rviz/stseg.rviz"),
        DeclareLaunchArgument("composed", default_value="false",
                              description="run accumulator and mapper in one process"),
        DeclareLaunchArgument("params_file",
                              default_value=os.path.join(share, "config", "mapping.yaml"),
                              description="parameter file of the nodes"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="configure and activate the nodes at once (false: "
                                          "leave them unconfigured for a lifecycle manager)"),
    ]
    common = [arg("params_file"), {"use_sim_time": arg("use_sim_time"),
                                   "autostart": arg("autostart")}]
    mapper_params = [*common, {"db_path": arg("db_path"), "segmentation.device": arg("device")}]
    separate = UnlessCondition(arg("composed"))
    nodes = [
        # RViz first: a missing rviz2 package then stops the launch before it has
        # started the nodes (an exception in a later action leaves them orphaned)
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", os.path.join(share, "rviz", "stseg.rviz")],
             parameters=[{"use_sim_time": arg("use_sim_time")}],
             condition=IfCondition(arg("rviz"))),
        LifecycleNode(package="stseg_ros", executable="accumulator", name="accumulator",
                      namespace=arg("namespace"), output="screen", parameters=common,
                      condition=separate),
        LifecycleNode(package="stseg_ros", executable="mapper", name="mapper",
                      namespace=arg("namespace"), output="screen", parameters=mapper_params,
                      condition=separate),
        # one process, both nodes (names come from the nodes themselves)
        Node(package="stseg_ros", executable="mapping", namespace=arg("namespace"),
             output="screen", parameters=mapper_params, condition=IfCondition(arg("composed"))),
    ]
    return LaunchDescription(args + nodes)
