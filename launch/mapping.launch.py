"""Launch the stseg_ros mapping nodes (accumulator + mapper) with the
parameters of config/mapping.yaml, and optionally RViz.

    ros2 launch stseg_ros mapping.launch.py [db_path:=FILE] [device:=cpu|cuda]
        [use_sim_time:=true] [namespace:=NS] [rviz:=true] [composed:=true]
        [params_file:=FILE]
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

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
    ]
    common = [arg("params_file"), {"use_sim_time": arg("use_sim_time")}]
    mapper_params = [*common, {"db_path": arg("db_path"), "device": arg("device")}]
    separate = UnlessCondition(arg("composed"))
    nodes = [
        Node(package="stseg_ros", executable="accumulator", name="accumulator",
             namespace=arg("namespace"), output="screen", parameters=common,
             condition=separate),
        Node(package="stseg_ros", executable="mapper", name="mapper",
             namespace=arg("namespace"), output="screen", parameters=mapper_params,
             condition=separate),
        # one process, both nodes (names come from the nodes themselves)
        Node(package="stseg_ros", executable="mapping", namespace=arg("namespace"),
             output="screen", parameters=mapper_params, condition=IfCondition(arg("composed"))),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", os.path.join(share, "rviz", "stseg.rviz")],
             parameters=[{"use_sim_time": arg("use_sim_time")}],
             condition=IfCondition(arg("rviz"))),
    ]
    return LaunchDescription(args + nodes)
