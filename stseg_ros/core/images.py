"""Colour and depth images from ROS messages and image files, as plain arrays.

Colour comes out as (H, W, 3) uint8 RGB and depth as (H, W) float32 metres
(0 or NaN = no return), whatever the source: ``sensor_msgs/Image`` (rgb8,
bgr8, rgba8, bgra8, mono8, 16UC1 / mono16 in mm, 32FC1 in m),
``sensor_msgs/CompressedImage`` as ``image_transport``'s ``compressed``
(jpeg / png) and ``compressedDepth`` (png, 16UC1 or inverse-quantised
32FC1) plugins write it, and PNG / JPEG files of RGB-D datasets. Anything
else is a ``ValueError`` that says what was found.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np

_BYTES = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3,
          "16UC1": 2, "mono16": 2, "32FC1": 4}
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")
# compressed_depth_image_transport: a ConfigHeader (int32 format, float32
# depthParam[2]) before the PNG; 32FC1 depth is stored as quantised inverse depth
_DEPTH_HEADER = struct.Struct("<iff")


def _pil_open(data: bytes, what: str):
    from PIL import Image, UnidentifiedImageError

    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{what}: not a readable PNG/JPEG image ({err})") from None
    return img


def decode_color_bytes(data: bytes, what: str = "image") -> np.ndarray:
    """A PNG or JPEG colour image (any mode) as (H, W, 3) uint8 RGB."""
    return np.asarray(_pil_open(bytes(data), what).convert("RGB"))


def decode_depth_png(data: bytes, scale: float, what: str = "depth image") -> np.ndarray:
    """A 16-bit PNG of depth in units of 1/``scale`` m, as float32 metres."""
    img = _pil_open(bytes(data), what)
    raw = np.asarray(img)
    if raw.ndim != 2 or raw.dtype.kind not in "ui":
        raise ValueError(f"{what}: expected a one-channel 16-bit depth PNG, got mode "
                         f"{img.mode} {raw.shape}")
    return raw.astype(np.float32) / float(scale)


def read_color_file(path: Path) -> np.ndarray:
    return decode_color_bytes(Path(path).read_bytes(), str(path))


def read_depth_file(path: Path, scale: float = 1000.0) -> np.ndarray:
    """A depth PNG (ScanNet, 7-Scenes: mm, ``scale`` 1000; TUM: 5000) in metres;
    65535, Kinect's "no return" in 7-Scenes, becomes 0."""
    depth = decode_depth_png(Path(path).read_bytes(), 1.0, str(path))
    depth[depth >= 65535] = 0
    return depth / float(scale)


def decode_image(msg) -> np.ndarray:
    """A ``sensor_msgs/Image`` or ``CompressedImage`` (rclpy or rosbags message)."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return decode_compressed(msg)
    return decode_raw(msg)


def decode_raw(msg) -> np.ndarray:
    """Colour encodings to (H, W, 3) RGB uint8; 16UC1 (mm) and 32FC1 (m) to metres."""
    h, w, enc, step = int(msg.height), int(msg.width), msg.encoding, int(msg.step)
    if enc not in _BYTES:
        raise ValueError(f"unsupported image encoding {enc!r} (expected one of {sorted(_BYTES)})")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if h == 0 or w == 0 or len(data) < h * step or step < w * _BYTES[enc]:
        raise ValueError(f"{enc} image {w}x{h} with step {step} needs {h * step} bytes, "
                         f"got {len(data)}")
    rows = data[:h * step].reshape(h, step)[:, :w * _BYTES[enc]]
    if enc in DEPTH_ENCODINGS:
        big = ">" if msg.is_bigendian else "<"
        if enc == "32FC1":
            return rows.copy().view(f"{big}f4").astype(np.float32)
        return rows.copy().view(f"{big}u2").astype(np.float32) / 1000.0
    img = rows.reshape(h, w, _BYTES[enc])
    if img.shape[2] == 1:
        return np.repeat(img, 3, axis=2)
    if enc.startswith("bgr"):
        return img[..., 2::-1].copy()
    return img[..., :3].copy()


def decode_label_image(msg) -> np.ndarray:
    """A ``sensor_msgs/Image`` of per-pixel label ids (mono8 / 8UC1, mono16 /
    16UC1, 32SC1) as (H, W) int32; ValueError naming what was found otherwise."""
    sizes = {"mono8": "u1", "8UC1": "u1", "mono16": "u2", "16UC1": "u2", "32SC1": "i4"}
    enc = getattr(msg, "encoding", None)
    if enc not in sizes:
        raise ValueError(f"label image encoding {enc!r}: expected one of {sorted(sizes)} "
                         "(per-pixel class ids)")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    dtype = np.dtype(sizes[enc]).newbyteorder(">" if msg.is_bigendian else "<")
    data = np.frombuffer(msg.data, dtype=np.uint8)     # no copy of a 600 kB image
    if h == 0 or w == 0 or step < w * dtype.itemsize or len(data) < h * step:
        raise ValueError(f"{enc} label image {w}x{h} with step {step} needs {h * step} "
                         f"bytes, got {len(data)}")
    rows = data[:h * step].reshape(h, step)[:, :w * dtype.itemsize]
    return np.ascontiguousarray(rows).view(dtype).reshape(h, w).astype(np.int32)


def decode_compressed(msg) -> np.ndarray:
    """``image_transport`` ``compressed`` (colour) or ``compressedDepth`` (depth)."""
    fmt, data = str(msg.format), bytes(msg.data)
    if "compressedDepth" in fmt:
        return decode_compressed_depth(fmt, data)
    if not data:
        raise ValueError(f"compressed image ({fmt!r}) has no data")
    return decode_color_bytes(data, f"compressed image ({fmt!r})")


def decode_compressed_depth(fmt: str, data: bytes) -> np.ndarray:
    """``compressedDepth``: format ``"16UC1; compressedDepth png"`` (PNG of mm)
    or ``"32FC1; compressedDepth png"`` (PNG of inverse depth, quantised with
    the header's two parameters: depth = a / (value - b), value 0 = no return)."""
    encoding = fmt.split(";")[0].strip()
    if "rvl" in fmt.split(";")[-1]:
        raise ValueError(f"compressedDepth codec in {fmt!r} is not supported (use png)")
    if encoding not in DEPTH_ENCODINGS:
        raise ValueError(f"compressedDepth image of encoding {encoding!r} (format {fmt!r}); "
                         "expected 16UC1 or 32FC1")
    if len(data) <= _DEPTH_HEADER.size:
        raise ValueError(f"compressedDepth image ({fmt!r}) is {len(data)} bytes, shorter "
                         "than its header")
    _, quant_a, quant_b = _DEPTH_HEADER.unpack_from(data)
    raw = decode_depth_png(data[_DEPTH_HEADER.size:], 1.0, f"compressedDepth ({fmt!r})")
    if encoding != "32FC1":
        return raw / 1000.0
    depth = np.zeros_like(raw)
    valid = raw > 0
    depth[valid] = quant_a / (raw[valid] - quant_b)
    return depth


def encode_compressed_depth(depth_m: np.ndarray, encoding: str = "16UC1",
                            quantization: float = 100.0, depth_max: float = 10.0
                            ) -> tuple[str, bytes]:
    """The (format, data) ``compressed_depth_image_transport`` publishes for a
    depth image in metres; for writing bags and test fixtures."""
    from PIL import Image

    depth = np.nan_to_num(np.asarray(depth_m, np.float64), nan=0.0)
    if encoding == "32FC1":
        quant_a = quantization * (quantization + 1.0)
        quant_b = 1.0 - quant_a / depth_max
        raw = np.zeros(depth.shape, np.uint16)
        valid = (depth > 0) & (depth < depth_max)
        raw[valid] = np.round(quant_a / depth[valid] + quant_b).astype(np.uint16)
    else:
        quant_a = quant_b = 0.0
        raw = np.clip(np.round(depth * 1000.0), 0, 65535).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(raw).save(buf, format="PNG")
    header = _DEPTH_HEADER.pack(0, quant_a, quant_b)
    return f"{encoding}; compressedDepth png", header + buf.getvalue()


def encode_color(rgb: np.ndarray, fmt: str = "jpeg") -> tuple[str, bytes]:
    """The (format, data) of ``image_transport``'s ``compressed`` plugin for RGB."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buf, format="JPEG" if fmt == "jpeg" else "PNG",
                                                   quality=95)
    return f"rgb8; {fmt} compressed bgr8", buf.getvalue()
