"""Tiny fixtures in the real input formats, written from a generated revisit.

Each writer takes the posed RGB-D frames of a generated room (true poses in
the room's odom frame) and lays them out as a real tool would: TUM RGB-D,
7-Scenes and ScanNet frame folders, and rosbag2 recordings with the topics
of realsense2_camera (compressed images, a TF chain) and zed_wrapper (bgra8,
32FC1, odometry). ``world_from_odom`` places them in another world frame,
for example 7-Scenes' y-down one, so tests know the exact answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from stseg_ros.benchmark.bag import _header, _quaternion, _transform
from stseg_ros.core.images import encode_color, encode_compressed_depth
from stseg_ros.mapping.frames import RgbdFrame

TS = get_typestore(Stores.ROS2_KILTED)
M = TS.types
Y_DOWN = np.array([[1, 0, 0, 0.3], [0, 0, -1, 1.2], [0, 1, 0, -0.4], [0, 0, 0, 1.0]])
"""A 7-Scenes-like world: odom's up (+z) is this world's -y, origin elsewhere."""


def _pose_line(stamp_s: float, pose: np.ndarray) -> str:
    q = _quaternion(pose[:3, :3])
    t = pose[:3, 3]
    return f"{stamp_s:.6f} {t[0]:.6f} {t[1]:.6f} {t[2]:.6f} {q.x:.7f} {q.y:.7f} {q.z:.7f} {q.w:.7f}"


def _png16(path: Path, depth_m: np.ndarray, scale: float) -> None:
    raw = np.clip(np.round(np.nan_to_num(depth_m) * scale), 0, 65535).astype(np.uint16)
    Image.fromarray(raw).save(path)


def write_tum(folder: Path, frames: list[RgbdFrame], world_from_odom=None) -> Path:
    """rgb/ and depth/ PNGs (depth x 5000), rgb.txt, depth.txt (5 ms later),
    groundtruth.txt at twice the frame rate."""
    world_from_odom = np.eye(4) if world_from_odom is None else world_from_odom
    (folder / "rgb").mkdir(parents=True)
    (folder / "depth").mkdir()
    rgb_lines, depth_lines, gt_lines = ["# color images"], ["# depth maps"], ["# ground truth"]
    for f in frames:
        t = f.stamp_ns / 1e9
        Image.fromarray(f.color).save(folder / "rgb" / f"{t:.6f}.png")
        _png16(folder / "depth" / f"{t + 0.005:.6f}.png", f.depth, 5000.0)
        rgb_lines.append(f"{t:.6f} rgb/{t:.6f}.png")
        depth_lines.append(f"{t + 0.005:.6f} depth/{t + 0.005:.6f}.png")
        pose = world_from_odom @ f.odom_from_camera
        gt_lines += [_pose_line(t - 0.01, pose), _pose_line(t + 0.01, pose)]
    for name, lines in (("rgb", rgb_lines), ("depth", depth_lines), ("groundtruth", gt_lines)):
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n")
    return folder


def write_7scenes(folder: Path, frames: list[RgbdFrame], world_from_odom=None) -> Path:
    """frame-XXXXXX.color.jpg / .depth.png (mm, 65535 = none) / .pose.txt and
    camera-intrinsics.txt."""
    world_from_odom = np.eye(4) if world_from_odom is None else world_from_odom
    folder.mkdir(parents=True)
    for k, f in enumerate(frames):
        Image.fromarray(f.color).save(folder / f"frame-{k:06d}.color.jpg", quality=95)
        depth = np.where(f.depth > 0, f.depth, 65.535)
        _png16(folder / f"frame-{k:06d}.depth.png", depth, 1000.0)
        np.savetxt(folder / f"frame-{k:06d}.pose.txt", world_from_odom @ f.odom_from_camera)
    np.savetxt(folder / "camera-intrinsics.txt", frames[0].intrinsics.matrix)
    return folder


def write_scannet_frames(folder: Path, frames: list[RgbdFrame], lost: int = 1) -> Path:
    """ScanNet's .sens export: colour at twice the depth size, depth mm, poses
    (frame ``lost`` with -inf, as ScanNet writes where tracking was lost)."""
    for d in ("color", "depth", "pose", "intrinsic"):
        (folder / d).mkdir(parents=True)
    for k, f in enumerate(frames):
        h, w = f.depth.shape
        Image.fromarray(f.color).resize((2 * w, 2 * h)).save(folder / "color" / f"{k}.jpg",
                                                             quality=95)
        _png16(folder / "depth" / f"{k}.png", f.depth, 1000.0)
        pose = np.full((4, 4), -np.inf) if k == lost else f.odom_from_camera
        np.savetxt(folder / "pose" / f"{k}.txt", pose)
    k4 = np.eye(4)
    k4[:3, :3] = frames[0].intrinsics.matrix
    np.savetxt(folder / "intrinsic" / "intrinsic_depth.txt", k4)
    return folder


class _Bag:
    def __init__(self, path: Path, storage: StoragePlugin = StoragePlugin.MCAP) -> None:
        self.writer = Writer(path, version=9, storage_plugin=storage)
        self.conn: dict[str, object] = {}

    def __enter__(self):
        self.writer.open()
        return self

    def __exit__(self, *exc) -> None:
        self.writer.close()

    def write(self, topic: str, ns: int, msg) -> None:
        if topic not in self.conn:
            self.conn[topic] = self.writer.add_connection(topic, msg.__msgtype__, typestore=TS)
        self.writer.write(self.conn[topic], ns, TS.serialize_cdr(msg, msg.__msgtype__))


def _info(ns: int, frame: str, f: RgbdFrame):
    k = f.intrinsics.matrix
    p = np.zeros((3, 4))
    p[:, :3] = k
    h, w = f.depth.shape
    return M["sensor_msgs/msg/CameraInfo"](
        header=_header(ns, frame), height=h, width=w, distortion_model="plumb_bob",
        d=np.zeros(5), k=k.reshape(-1), r=np.eye(3).reshape(-1), p=p.reshape(-1), binning_x=0,
        binning_y=0, roi=M["sensor_msgs/msg/RegionOfInterest"](
            x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def _image(ns: int, frame: str, array: np.ndarray, encoding: str):
    h, w = array.shape[:2]
    data = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
    return M["sensor_msgs/msg/Image"](header=_header(ns, frame), height=h, width=w,
                                      encoding=encoding, is_bigendian=0,
                                      step=len(data) // h, data=data)


def _compressed(ns: int, frame: str, fmt: str, data: bytes):
    return M["sensor_msgs/msg/CompressedImage"](
        header=_header(ns, frame), format=fmt, data=np.frombuffer(data, np.uint8))


def _tf(*transforms):
    return M["tf2_msgs/msg/TFMessage"](transforms=list(transforms))


# base_link -> camera_link -> optical: the realsense2_camera / REP 103 chain
BASE_FROM_LINK = np.array([[1, 0, 0, 0.1], [0, 1, 0, 0.0], [0, 0, 1, 1.1], [0, 0, 0, 1.0]])
LINK_FROM_OPTICAL = np.array([[0, 0, 1, 0], [-1, 0, 0, 0.015], [0, -1, 0, 0], [0, 0, 0, 1.0]])


def write_realsense_bag(path: Path, frames: list[RgbdFrame], map_from_odom: np.ndarray) -> Path:
    """A bag as realsense2_camera and a robot would record it: jpeg colour on
    ``.../color/image_raw/compressed``, 16UC1 ``compressedDepth`` depth, and the
    pose through map -> odom (/tf) -> base_link (/tf, 4x the frame rate) ->
    camera_link -> camera_color_optical_frame (/tf_static)."""
    cam = "camera_color_optical_frame"
    base_from_camera = BASE_FROM_LINK @ LINK_FROM_OPTICAL
    with _Bag(path) as bag:
        t0 = frames[0].stamp_ns
        bag.write("/tf_static", t0, _tf(_transform(t0, "base_link", "camera_link", BASE_FROM_LINK),
                                        _transform(t0, "camera_link", cam, LINK_FROM_OPTICAL)))
        for k, f in enumerate(frames):
            odom_from_base = f.odom_from_camera @ np.linalg.inv(base_from_camera)
            nxt = frames[min(k + 1, len(frames) - 1)]
            next_base = nxt.odom_from_camera @ np.linalg.inv(base_from_camera)
            for q in range(4):                 # odometry between frames, interpolated linearly
                a, ns = q / 4, f.stamp_ns + q * (nxt.stamp_ns - f.stamp_ns) // 4
                pose = odom_from_base.copy()
                pose[:3, 3] = (1 - a) * odom_from_base[:3, 3] + a * next_base[:3, 3]
                if q == 0 or k + 1 < len(frames):
                    bag.write("/tf", ns, _tf(_transform(ns, "map", "odom", map_from_odom),
                                             _transform(ns, "odom", "base_link",
                                                        odom_from_base if q == 0 else pose)))
            ns = f.stamp_ns
            bag.write("/camera/camera/color/image_raw/compressed", ns,
                      _compressed(ns, cam, *encode_color(f.color, "jpeg")))
            bag.write("/camera/camera/aligned_depth_to_color/image_raw/compressedDepth", ns,
                      _compressed(ns, cam, *encode_compressed_depth(f.depth)))
            bag.write("/camera/camera/color/camera_info", ns, _info(ns, cam, f))
            bag.write("/camera/camera/depth/camera_info", ns, _info(ns, "camera_depth_frame", f))
    return path


def write_zed_bag(path: Path, frames: list[RgbdFrame]) -> Path:
    """A zed_wrapper recording: bgra8 colour, 32FC1 depth (NaN = none), the
    pose only as nav_msgs/Odometry odom -> zed_camera_link, plus /tf_static."""
    cam, link = "zed_left_camera_frame_optical", "zed_camera_link"
    link_from_optical = LINK_FROM_OPTICAL
    with _Bag(path) as bag:
        t0 = frames[0].stamp_ns
        bag.write("/tf_static", t0, _tf(_transform(t0, link, cam, link_from_optical)))
        for f in frames:
            ns = f.stamp_ns
            odom_from_link = f.odom_from_camera @ np.linalg.inv(link_from_optical)
            tf = _transform(ns, "odom", link, odom_from_link)
            bag.write("/zed/zed_node/odom", ns, M["nav_msgs/msg/Odometry"](
                header=_header(ns, "odom"), child_frame_id=link,
                pose=M["geometry_msgs/msg/PoseWithCovariance"](
                    pose=M["geometry_msgs/msg/Pose"](
                        position=M["geometry_msgs/msg/Point"](
                            x=tf.transform.translation.x, y=tf.transform.translation.y,
                            z=tf.transform.translation.z),
                        orientation=tf.transform.rotation), covariance=np.zeros(36)),
                twist=M["geometry_msgs/msg/TwistWithCovariance"](
                    twist=M["geometry_msgs/msg/Twist"](
                        linear=M["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                        angular=M["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)),
                    covariance=np.zeros(36))))
            bgra = np.concatenate([f.color[..., ::-1], np.full(f.depth.shape + (1,), 255,
                                                               np.uint8)], axis=2)
            bag.write("/zed/zed_node/rgb/color/rect/image", ns, _image(ns, cam, bgra, "bgra8"))
            depth = np.where(f.depth > 0, f.depth, np.nan).astype("<f4")
            bag.write("/zed/zed_node/depth/depth_registered", ns,
                      _image(ns, cam, depth, "32FC1"))
            bag.write("/zed/zed_node/rgb/color/rect/camera_info", ns, _info(ns, cam, f))
    return path


def write_custom_bag(path: Path, frames: list[RgbdFrame],
                     storage: StoragePlugin = StoragePlugin.MCAP) -> Path:
    """Own topic names: raw rgb8 on /front/image, 32FC1 ``compressedDepth`` on
    /front/range/compressedDepth, /front/info, the camera pose straight on /tf."""
    cam = "front_optical"
    with _Bag(path, storage) as bag:
        for f in frames:
            ns = f.stamp_ns
            bag.write("/tf", ns, _tf(_transform(ns, "odom", cam, f.odom_from_camera)))
            bag.write("/front/image", ns, _image(ns, cam, f.color, "rgb8"))
            bag.write("/front/range/compressedDepth", ns,
                      _compressed(ns, cam, *encode_compressed_depth(f.depth, "32FC1")))
            bag.write("/front/info", ns, _info(ns, cam, f))
    return path
