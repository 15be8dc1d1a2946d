"""Write a revisit as a rosbag2 (MCAP) with the input topics of the mapper.

Topics and frames follow the package's contract (README, "Dataset layout"):
colour (rgb8) and depth (16UC1, millimetres, registered to colour) in the
optical frame, camera_info, odometry at four times the frame rate, and the
transforms odom -> base_link (``/tf``) and base_link -> optical (``/tf_static``).
Chunks are zstd-compressed, as ``ros2 bag record --storage-preset-profile zstd_fast``
does.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability
from rosbags.interfaces import QosTime as Time
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer, storage_mcap
from rosbags.typesys import Stores, get_typestore

from stseg_ros.core.camera import Intrinsics
from stseg_ros.core.pointcloud import planar_pose
from stseg_ros.core.topics import FRAMES, TOPICS

_TS = get_typestore(Stores.ROS2_KILTED)
_M = _TS.types
_LATCHED = Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL,
               Time(0, 0), Time(0, 0), QosLiveliness.AUTOMATIC, Time(0, 0), False)


def _stamp(ns: int):
    return _M["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _header(ns: int, frame: str):
    return _M["std_msgs/msg/Header"](stamp=_stamp(ns), frame_id=frame)


def _quaternion(rotation: np.ndarray):
    """Unit quaternion (x, y, z, w) of a 3x3 rotation matrix."""
    m = rotation
    w = math.sqrt(max(0.0, 1 + m[0, 0] + m[1, 1] + m[2, 2])) / 2
    x = math.copysign(math.sqrt(max(0.0, 1 + m[0, 0] - m[1, 1] - m[2, 2])) / 2, m[2, 1] - m[1, 2])
    y = math.copysign(math.sqrt(max(0.0, 1 - m[0, 0] + m[1, 1] - m[2, 2])) / 2, m[0, 2] - m[2, 0])
    z = math.copysign(math.sqrt(max(0.0, 1 - m[0, 0] - m[1, 1] + m[2, 2])) / 2, m[1, 0] - m[0, 1])
    return _M["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w)


def _transform(ns: int, parent: str, child: str, pose: np.ndarray):
    t = pose[:3, 3]
    return _M["geometry_msgs/msg/TransformStamped"](
        header=_header(ns, parent), child_frame_id=child,
        transform=_M["geometry_msgs/msg/Transform"](
            translation=_M["geometry_msgs/msg/Vector3"](x=t[0], y=t[1], z=t[2]),
            rotation=_quaternion(pose[:3, :3])))


class RevisitBagWriter:
    """Context manager writing one revisit's input topics to ``path`` (MCAP, zstd)."""

    def __init__(self, path: Path, intrinsics: Intrinsics) -> None:
        self.intr = intrinsics
        self.writer = Writer(path, version=9, storage_plugin=StoragePlugin.MCAP)
        self.writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self.conn: dict[str, object] = {}

    def __enter__(self) -> RevisitBagWriter:
        self.writer.open()
        storage = self.writer.storage
        if getattr(storage, "compression", "") == "zstd" and hasattr(storage, "compressor"):
            # the same zstd chunks, at level 1: 4x faster than the default level 3
            # on noisy camera images, and no bigger
            storage.compressor = functools.partial(storage_mcap.zstd.compress, level=1)
        types = {"color": "sensor_msgs/msg/Image", "depth": "sensor_msgs/msg/Image",
                 "camera_info": "sensor_msgs/msg/CameraInfo",
                 "odometry": "nav_msgs/msg/Odometry", "tf": "tf2_msgs/msg/TFMessage",
                 "tf_static": "tf2_msgs/msg/TFMessage"}
        for key, msgtype in types.items():
            qos = [_LATCHED] if key == "tf_static" else []
            self.conn[key] = self.writer.add_connection(TOPICS[key], msgtype, typestore=_TS,
                                                        offered_qos_profiles=qos)
        return self

    def __exit__(self, *exc) -> None:
        self.writer.close()

    def _write(self, key: str, ns: int, msg) -> None:
        self.writer.write(self.conn[key], ns, _TS.serialize_cdr(msg, msg.__msgtype__))

    def static_transform(self, ns: int, base_to_camera: np.ndarray) -> None:
        tf = _transform(ns, FRAMES["base"], FRAMES["camera"], base_to_camera)
        self._write("tf_static", ns, _M["tf2_msgs/msg/TFMessage"](transforms=[tf]))

    def odometry(self, ns: int, x: float, y: float, yaw: float,
                 velocity: tuple[float, float]) -> None:
        """Base pose in odom as ``/odom`` and as the odom -> base_link transform."""
        tf = _transform(ns, FRAMES["odom"], FRAMES["base"], planar_pose(x, y, yaw))
        self._write("tf", ns, _M["tf2_msgs/msg/TFMessage"](transforms=[tf]))
        cov = np.zeros(36)
        cov[[0, 7, 35]] = (1e-4, 1e-4, 1e-4)
        msg = _M["nav_msgs/msg/Odometry"](
            header=_header(ns, FRAMES["odom"]), child_frame_id=FRAMES["base"],
            pose=_M["geometry_msgs/msg/PoseWithCovariance"](
                pose=_M["geometry_msgs/msg/Pose"](
                    position=_M["geometry_msgs/msg/Point"](x=x, y=y, z=0.0),
                    orientation=tf.transform.rotation),
                covariance=cov),
            twist=_M["geometry_msgs/msg/TwistWithCovariance"](
                twist=_M["geometry_msgs/msg/Twist"](
                    linear=_M["geometry_msgs/msg/Vector3"](x=velocity[0], y=0.0, z=0.0),
                    angular=_M["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=velocity[1])),
                covariance=cov))
        self._write("odometry", ns, msg)

    def labels(self, ns: int, topic: str, labels: np.ndarray) -> None:
        """A label image (mono16 ids of the robot's label set) stamped as its colour image."""
        if topic not in self.conn:
            self.conn[topic] = self.writer.add_connection(topic, "sensor_msgs/msg/Image",
                                                          typestore=_TS)
        h, w = labels.shape
        self._write(topic, ns, _M["sensor_msgs/msg/Image"](
            header=_header(ns, FRAMES["camera"]), height=h, width=w, encoding="mono16",
            is_bigendian=0, step=w * 2,
            data=np.ascontiguousarray(labels, dtype="<u2").view(np.uint8).reshape(-1)))

    def frame(self, ns: int, color: np.ndarray, depth_mm: np.ndarray) -> None:
        """One RGB-D pair (rgb8 and 16UC1 millimetres) and its camera_info."""
        h, w = depth_mm.shape
        header = _header(ns, FRAMES["camera"])
        image = _M["sensor_msgs/msg/Image"]
        self._write("color", ns, image(
            header=header, height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3,
            data=np.ascontiguousarray(color, dtype=np.uint8).reshape(-1)))
        self._write("depth", ns, image(
            header=header, height=h, width=w, encoding="16UC1", is_bigendian=0, step=w * 2,
            data=np.ascontiguousarray(depth_mm, dtype="<u2").view(np.uint8).reshape(-1)))
        k = self.intr.matrix
        p = np.zeros((3, 4))
        p[:, :3] = k
        self._write("camera_info", ns, _M["sensor_msgs/msg/CameraInfo"](
            header=header, height=h, width=w, distortion_model="plumb_bob", d=np.zeros(5),
            k=k.reshape(-1), r=np.eye(3).reshape(-1), p=p.reshape(-1), binning_x=0,
            binning_y=0, roi=_M["sensor_msgs/msg/RegionOfInterest"](
                x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)))
