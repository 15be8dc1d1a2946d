"""sensor_msgs/PointCloud2 from and to numpy (sensor_msgs_py is not always
installed): named per-point fields, one array each."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

_DATATYPE = {np.dtype(np.int8): PointField.INT8, np.dtype(np.uint8): PointField.UINT8,
             np.dtype(np.int16): PointField.INT16, np.dtype(np.uint16): PointField.UINT16,
             np.dtype(np.int32): PointField.INT32, np.dtype(np.uint32): PointField.UINT32,
             np.dtype(np.float32): PointField.FLOAT32, np.dtype(np.float64): PointField.FLOAT64}
_DTYPE = {v: k for k, v in _DATATYPE.items()}


def pack_rgb(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 colours as the float32 ``rgb`` field RViz reads."""
    rgb = np.asarray(rgb, dtype=np.uint32)
    return ((rgb[:, 0] << 16) | (rgb[:, 1] << 8) | rgb[:, 2]).astype(np.uint32).view(np.float32)


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    value = np.ascontiguousarray(packed, dtype=np.float32).view(np.uint32)
    return np.stack([(value >> 16) & 255, (value >> 8) & 255, value & 255], 1).astype(np.uint8)


def to_cloud(header: Header, **fields: np.ndarray) -> PointCloud2:
    """An unorganised cloud with the given fields, in the order given."""
    n = len(next(iter(fields.values()))) if fields else 0
    dtype = np.dtype([(name, np.asarray(v).dtype) for name, v in fields.items()])
    if any(len(v) != n for v in fields.values()):
        raise ValueError("every field needs one value per point")
    packed = np.empty(n, dtype=dtype)
    for name, values in fields.items():
        packed[name] = values
    msg = PointCloud2(header=header, height=1, width=n, is_bigendian=False,
                      point_step=dtype.itemsize, row_step=dtype.itemsize * n, is_dense=True)
    msg.fields = [PointField(name=name, offset=dtype.fields[name][1],
                             datatype=_DATATYPE[dtype.fields[name][0]], count=1)
                  for name in fields]
    msg.data = packed.tobytes()          # bytes: assigning an ndarray is 100x slower
    return msg


def from_cloud(msg: PointCloud2) -> np.ndarray:
    """The cloud's points as a structured array with one field per PointField."""
    if msg.is_bigendian:
        raise ValueError("big-endian point clouds are not supported")
    dtype = np.dtype({"names": [f.name for f in msg.fields],
                      "formats": [_DTYPE[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields],
                      "itemsize": msg.point_step})
    n = msg.width * msg.height
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if len(data) < n * msg.point_step:
        raise ValueError(f"cloud of {n} points needs {n * msg.point_step} bytes, "
                         f"got {len(data)}")
    return data[:n * msg.point_step].view(dtype)
