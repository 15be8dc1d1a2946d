"""Default topic and frame names of the mapper's inputs (package contract, REP 105)."""

from __future__ import annotations

TOPICS = {
    "color": "/camera/color/image_raw",
    "depth": "/camera/depth/image_raw",
    "camera_info": "/camera/color/camera_info",
    "odometry": "/odom",
    "tf": "/tf",
    "tf_static": "/tf_static",
}
FRAMES = {"odom": "odom", "base": "base_link", "camera": "camera_color_optical_frame"}
