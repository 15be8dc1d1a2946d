"""Read the vertices of a PLY file, and write a vertex-only PLY.

A PLY file is a text header naming its elements (``vertex``, ``face``, ...)
in file order, each with a count and typed properties, then the data: one
line per item in ``ascii``, packed items in ``binary_little_endian`` (or big
endian). ``read_ply_vertices`` builds a numpy structured dtype from the
vertex properties, so any set of per-vertex fields (x y z, colours, labels
such as 3RScan's objectId/NYU40) reads in one go; elements after the
vertices (faces) are never read, elements before them are skipped.

Nothing here knows about datasets: malformed files raise ``PlyError`` (a
``FormatError``) naming the file and what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stseg_ros.core.layout import FormatError

# PLY scalar type names (both spellings) -> numpy type codes without byte order
_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
# numpy type codes -> the PLY name write_ply uses
_NAMES = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int",
          "u4": "uint", "f4": "float", "f8": "double"}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_MAX_HEADER = 1 << 20


class PlyError(FormatError):
    """A PLY file that is missing, malformed, truncated or lacks vertices."""


class _Element:
    def __init__(self, name: str, count: int) -> None:
        self.name, self.count = name, count
        self.scalars: list[tuple[str, str]] = []       # (property name, numpy code)
        self.lists: list[tuple[str, str, str]] = []    # (name, count code, item code)
        self.order: list[str] = []                     # property kinds in file order


def _header(path: Path, raw: bytes) -> tuple[str | None, list[_Element], int]:
    """Byte order (None for ascii), the elements, and where the data starts."""
    end = raw.find(b"end_header")
    if not raw.startswith(b"ply") or end < 0:
        raise PlyError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
    start = raw.index(b"\n", end) + 1 if b"\n" in raw[end:] else len(raw)
    try:
        lines = raw[:end].decode("ascii").splitlines()
    except UnicodeDecodeError:
        raise PlyError(f"{path}: PLY header is not ASCII") from None
    order: str | None = "?"
    elements: list[_Element] = []
    for n, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        try:
            if words[0] == "format":
                if words[1] not in _FORMATS:
                    raise PlyError(f"{path}: unsupported PLY format {words[1]!r}")
                order = _FORMATS[words[1]]
            elif words[0] == "element":
                elements.append(_Element(words[1], int(words[2])))
            elif words[0] == "property" and words[1] == "list":
                elements[-1].lists.append((words[4], _TYPES[words[2]], _TYPES[words[3]]))
                elements[-1].order.append("list")
            elif words[0] == "property":
                elements[-1].scalars.append((words[2], _TYPES[words[1]]))
                elements[-1].order.append("scalar")
            else:
                raise PlyError(f"{path}: header line {n} not understood: {line!r}")
        except (IndexError, ValueError, KeyError):
            raise PlyError(f"{path}: header line {n} malformed: {line!r}") from None
    if order == "?":
        raise PlyError(f"{path}: PLY header has no format line")
    return order, elements, start


def _skip_binary(path: Path, raw: bytes, pos: int, element: _Element, order: str) -> int:
    """Position after a binary element that comes before the vertices."""
    if not element.lists:
        size = np.dtype([(n, order + c) for n, c in element.scalars]).itemsize
        return pos + size * element.count
    # items of varying length: walk them (only odd files put such elements first)
    kinds = iter(element.order)
    scalars, lists = iter(element.scalars), iter(element.lists)
    layout = [next(scalars)[1] if k == "scalar" else next(lists)[1:] for k in kinds]
    for _ in range(element.count):
        for entry in layout:
            if isinstance(entry, str):
                pos += np.dtype(entry).itemsize
            else:
                count_code, item_code = entry
                if pos + np.dtype(count_code).itemsize > len(raw):
                    raise PlyError(f"{path}: truncated in element '{element.name}'")
                n = int(np.frombuffer(raw, order + count_code, 1, pos)[0])
                pos += np.dtype(count_code).itemsize + n * np.dtype(item_code).itemsize
    return pos


def read_ply_vertices(path) -> dict[str, np.ndarray]:
    """The vertex properties of a PLY file, one 1-D array per property name.

    Reads ascii and binary (little or big endian) files with any scalar vertex
    properties; faces and other elements are not returned. Arrays are in the
    native byte order with the property's own type (float32, uint8, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise PlyError(f"{path}: missing")
    raw = path.read_bytes()
    order, elements, pos = _header(path, raw[:_MAX_HEADER])
    vertex = next((e for e in elements if e.name == "vertex"), None)
    if vertex is None:
        raise PlyError(f"{path}: no vertex element")
    if vertex.lists:
        raise PlyError(f"{path}: list properties on vertices are not supported "
                       f"({', '.join(n for n, *_ in vertex.lists)})")
    names = [n for n, _ in vertex.scalars]
    if len(set(names)) != len(names):
        raise PlyError(f"{path}: vertex properties repeat a name")
    if order is None:
        return _ascii_vertices(path, raw, pos, elements, vertex)
    for element in elements[:elements.index(vertex)]:
        pos = _skip_binary(path, raw, pos, element, order)
    dtype = np.dtype([(n, order + c) for n, c in vertex.scalars])
    need = dtype.itemsize * vertex.count
    if pos + need > len(raw):
        have = max(len(raw) - pos, 0) // max(dtype.itemsize, 1)
        raise PlyError(f"{path}: truncated: the header promises {vertex.count} vertices, "
                       f"the file holds {have}")
    data = np.frombuffer(raw, dtype, vertex.count, pos)
    return {n: data[n].astype(dtype[n].newbyteorder("="), copy=True) for n in names}


def _ascii_vertices(path: Path, raw: bytes, pos: int, elements: list[_Element],
                    vertex: _Element) -> dict[str, np.ndarray]:
    lines = raw[pos:].split(b"\n")
    skip = sum(e.count for e in elements[:elements.index(vertex)])
    rows = [r for r in lines[skip:skip + vertex.count]]
    width = len(vertex.scalars)
    try:
        values = np.array(b" ".join(rows).split(), dtype=np.float64)
    except ValueError:
        raise PlyError(f"{path}: vertex data is not numeric") from None
    if len(rows) < vertex.count or values.size != vertex.count * width:
        raise PlyError(f"{path}: truncated or malformed: the header promises {vertex.count} "
                       f"vertices of {width} values, the file holds {values.size} values")
    table = values.reshape(vertex.count, width)
    return {n: table[:, k].astype(c) for k, (n, c) in enumerate(vertex.scalars)}


def write_ply(path, fields: dict[str, np.ndarray]) -> None:
    """Write a binary little-endian PLY holding only a vertex element.

    ``fields`` maps property names to 1-D arrays of one length, in the order
    they are written (x, y, z first by convention). Booleans are written as
    uchar and 64-bit integers as int/uint when their values fit.
    """
    path = Path(path)
    if not fields:
        raise ValueError("write_ply: no fields")
    columns: list[tuple[str, np.ndarray]] = []
    for name, values in fields.items():
        a = np.asarray(values)
        if a.ndim != 1:
            raise ValueError(f"write_ply: field {name!r} is not 1-D ({a.shape})")
        if " " in name or not name:
            raise ValueError(f"write_ply: field name {name!r} cannot go in a PLY header")
        if a.dtype == bool:
            a = a.astype(np.uint8)
        elif a.dtype.kind in "iu" and a.dtype.itemsize == 8:
            target = np.int32 if a.dtype.kind == "i" else np.uint32
            info = np.iinfo(target)
            if a.size and (a.min() < info.min or a.max() > info.max):
                raise ValueError(f"write_ply: field {name!r} does not fit a 32-bit integer")
            a = a.astype(target)
        code = a.dtype.str[1:]
        if code not in _NAMES:
            raise ValueError(f"write_ply: field {name!r} has type {a.dtype}, which PLY lacks")
        columns.append((name, a))
    n = len(columns[0][1])
    if any(len(a) != n for _, a in columns):
        raise ValueError("write_ply: fields differ in length")
    dtype = np.dtype([(name, "<" + a.dtype.str[1:]) for name, a in columns])
    table = np.empty(n, dtype)
    for name, a in columns:
        table[name] = a
    header = ["ply", "format binary_little_endian 1.0", "comment written by stseg_ros",
              f"element vertex {n}",
              *(f"property {_NAMES[a.dtype.str[1:]]} {name}" for name, a in columns),
              "end_header"]
    with open(path, "wb") as f:
        f.write(("\n".join(header) + "\n").encode("ascii"))
        f.write(table.tobytes())
