"""Launch the stseg_ros mapping nodes (accumulator + mapper) with the
parameters of config/mapping.yaml, and optionally RViz.

    ros2 launch stseg_ros mapping.launch.py [db_path:=FILE] [segmenter:=NAME]
        [device:=cpu|cuda] [weights:=FILE] [map_frame:=FRAME] [pose_source:=tf|odometry]
        [odom_frame:=FRAME] [camera_frame:=FRAME] [color_transport:=raw|compressed]
        [depth_transport:=raw|compressedDepth] [label_topic:=TOPIC] [label_set:=FILE]
        [use_sim_time:=true] [namespace:=NS]
        [rviz:=true] [composed:=true] [params_file:=FILE] [autostart:=true|false]

The per-setting arguments (db_path ... label_set) come from the
package's settings tree (stseg_ros/ros/settings.py, LAUNCH_ARGUMENTS): each is
one node parameter, described as the parameter is, and empty by default,
which leaves the parameter as params_file says. A value given is checked
against the parameter's range or choices before any node starts.

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
from launch.actions import DeclareLaunchArgument, OpaqueFunction, RegisterEventHandler, Shutdown
from launch.conditions import IfCondition, UnlessCondition
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode, Node

from launch import LaunchDescription
from stseg_ros.ros.settings import (
    LAUNCH_ARGUMENTS,
    launch_argument_description,
    launch_overrides,
)


def nodes(context):
    """The nodes, each given the per-setting arguments that were set."""
    share = get_package_share_directory("stseg_ros")
    arg = LaunchConfiguration
    overrides = launch_overrides({name: arg(name).perform(context)
                                  for name in LAUNCH_ARGUMENTS})
    common = [arg("params_file"), {"use_sim_time": arg("use_sim_time"),
                                   "autostart": arg("autostart")}]
    separate = UnlessCondition(arg("composed"))

    def params(*names):                 # an empty override dict is left out
        given = {k: v for n in names for k, v in overrides[n].items()}
        return [*common, given] if given else common

    def stop_on_failure(event, _context):
        # a node that exits non-zero (autostart's failed configure, a broken memory)
        # ends the launch, instead of leaving the other node running on its own
        if event.returncode:
            return [Shutdown(reason=f"{event.action.name} exited with code {event.returncode}")]
        return None

    return [
        # RViz first: a missing rviz2 package then stops the launch before it has
        # started the nodes (an exception in a later action leaves them orphaned)
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", os.path.join(share, "rviz", "stseg.rviz")],
             parameters=[{"use_sim_time": arg("use_sim_time")}],
             condition=IfCondition(arg("rviz"))),
        LifecycleNode(package="stseg_ros", executable="accumulator", name="accumulator",
                      namespace=arg("namespace"), output="screen",
                      parameters=params("accumulator"), condition=separate),
        LifecycleNode(package="stseg_ros", executable="mapper", name="mapper",
                      namespace=arg("namespace"), output="screen",
                      parameters=params("mapper"), condition=separate),
        # one process, both nodes (names come from the nodes themselves; no
        # parameter name is both nodes')
        Node(package="stseg_ros", executable="mapping", namespace=arg("namespace"),
             output="screen", parameters=params("accumulator", "mapper"),
             condition=IfCondition(arg("composed"))),
        RegisterEventHandler(OnProcessExit(on_exit=stop_on_failure)),
    ]


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("stseg_ros")
    args = [
        DeclareLaunchArgument("namespace", default_value="",
                              description="namespace of the nodes and their topics"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="follow /clock (rosbag replay)"),
        *(DeclareLaunchArgument(name, default_value="",
                                description=launch_argument_description(name))
          for name in LAUNCH_ARGUMENTS),
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
    return LaunchDescription([*args, OpaqueFunction(function=nodes)])
