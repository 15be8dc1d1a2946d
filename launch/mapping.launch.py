"""Launch the stseg_ros map nodes with the parameters of config/mapping.yaml.

    ros2 launch stseg_ros mapping.launch.py [namespace:=NS] [use_sim_time:=true]
        [snapshot:=FILE] [params_file:=FILE]
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("stseg_ros")
    default_params = os.path.join(share, "config", "mapping.yaml")
    args = [
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the nodes and their topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="follow /clock (rosbag replay)"),
        DeclareLaunchArgument("params_file", default_value=default_params,
                              description="parameter file of the nodes"),
        DeclareLaunchArgument("snapshot", default_value="",
                              description="map snapshot JSON to publish (empty: the example)"),
    ]
    map_server = Node(
        package="stseg_ros", executable="map_server", name="map_server",
        namespace=LaunchConfiguration("namespace"), output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    {"use_sim_time": LaunchConfiguration("use_sim_time"),
                     "snapshot": LaunchConfiguration("snapshot")}])
    return LaunchDescription(args + [map_server])
