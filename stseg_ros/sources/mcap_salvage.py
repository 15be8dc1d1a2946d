"""The readable part of an MCAP bag that was cut short (a recorder killed, a
disk full, a copy interrupted).

Such a file lacks its summary section and footer, so readers that start from
the index (rosbags) refuse all of it. Its records are still there in the order
they were written: schemas, channels and messages, inside chunks. This module
reads them sequentially from the start, like ``mcap recover`` does, and stops
at the first record that is incomplete or damaged; a last chunk cut in the
middle gives the messages its compressed stream still holds. ``stseg run``
reads the frames of what is salvaged; ``stseg replay`` replays a copy of it.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from stseg_ros.sources.base import InputError

log = logging.getLogger(__name__)

MAGIC = b"\x89MCAP0\r\n"
OP_FOOTER, OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK = 0x02, 0x03, 0x04, 0x05, 0x06
OP_DATA_END = 0x0F


@dataclass(frozen=True)
class SalvagedConnection:
    """A topic of a salvaged bag, as much of rosbags' Connection as the sources use."""

    id: int
    topic: str
    msgtype: str
    msgdef: str = ""              # the schema text (ros2msg or ros2idl)
    serialization_format: str = "cdr"
    qos_metadata: bytes = b""


@dataclass
class FileScan:
    """Where the sequential read of one MCAP file stopped, and what it found."""

    path: Path
    size: int
    readable_to: int = 0          # bytes: the records before this offset were read whole
    complete: bool = False        # reached the end of the data section: nothing was lost
    reason: str = ""
    messages: int = 0
    first_ns: int | None = None
    last_ns: int | None = None


class _CutError(Exception):
    """The file stops being readable here (internal)."""


def _string(buf: memoryview, pos: int) -> tuple[str, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    if pos + 4 + n > len(buf):
        raise _CutError("a string runs past its record")
    return bytes(buf[pos + 4:pos + 4 + n]).decode("utf-8", "replace"), pos + 4 + n


def _bytes(buf: memoryview, pos: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("<I", buf, pos)
    if pos + 4 + n > len(buf):
        raise _CutError("a field runs past its record")
    return bytes(buf[pos + 4:pos + 4 + n]), pos + 4 + n


def _partial(data: bytes, compression: str) -> bytes:
    """As much of a chunk's records as its cut compressed stream gives."""
    try:
        if compression == "":
            return data
        if compression == "zstd":
            try:
                from compression import zstd  # Python 3.14
            except ImportError:
                from backports import zstd
            return zstd.ZstdDecompressor().decompress(data)
        if compression == "lz4":
            import lz4.frame

            return lz4.frame.LZ4FrameDecompressor().decompress(data)
    except Exception:                                 # noqa: BLE001 - damaged: nothing here
        return b""
    return b""


def _decompress(data: bytes, compression: str, size: int, crc: int) -> bytes:
    from rosbags.rosbag2.storage_mcap import decompress

    try:
        return decompress(data, compression, size, crc)
    except Exception as err:                          # noqa: BLE001 - any codec error
        raise _CutError(f"a chunk does not decompress ({err})") from None


class McapScan:
    """The records of one MCAP file in order: ``schemas``, ``channels`` (by id)
    and, from ``messages()``, (channel id, log time ns, data), up to the damage."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.schemas: dict[int, tuple[str, str, str]] = {}      # id: name, encoding, text
        self.channels: dict[int, SalvagedConnection] = {}
        self.scan = FileScan(self.path, self.path.stat().st_size)

    def messages(self) -> Iterator[tuple[int, int, bytes]]:
        """Every readable message, in file order (``scan`` is updated as it goes)."""
        scan = self.scan
        scan.messages, scan.first_ns, scan.last_ns = 0, None, None
        with self.path.open("rb") as f:
            if f.read(8) != MAGIC:
                scan.reason = "no MCAP magic at its start"
                return
            pos = 8
            scan.readable_to = pos
            while True:
                f.seek(pos)
                head = f.read(9)
                if len(head) < 9:
                    scan.reason = "the file ends inside a record"
                    return
                op, length = head[0], struct.unpack_from("<Q", head, 1)[0]
                if op in (OP_DATA_END, OP_FOOTER):
                    scan.complete = True
                    return
                available = scan.size - pos - 9
                try:
                    if length > available:
                        if op == OP_CHUNK:
                            yield from self._cut_chunk(f.read(available))
                        scan.reason = "the file ends inside a record"
                        return
                    if op in (OP_SCHEMA, OP_CHANNEL, OP_MESSAGE, OP_CHUNK):
                        body = memoryview(f.read(length))
                        if op == OP_CHUNK:
                            yield from self._chunk(body)
                        else:
                            yield from self._record(op, body)
                    elif op == 0 or op > 0x0F:
                        raise _CutError(f"an unknown record (opcode {op:#x})")
                except (_CutError, struct.error, UnicodeDecodeError) as err:
                    malformed = not isinstance(err, _CutError)
                    scan.reason = "a record is malformed" if malformed else str(err)
                    return
                pos += 9 + length
                scan.readable_to = pos

    def _record(self, op: int, body: memoryview) -> Iterator[tuple[int, int, bytes]]:
        if op == OP_SCHEMA:
            (sid,) = struct.unpack_from("<H", body, 0)
            name, p = _string(body, 2)
            encoding, p = _string(body, p)
            text, _ = _bytes(body, p)
            self.schemas[sid] = (name, encoding, text.decode("utf-8", "replace"))
        elif op == OP_CHANNEL:
            cid, sid = struct.unpack_from("<HH", body, 0)
            topic, p = _string(body, 4)
            encoding, p = _string(body, p)
            metadata, _ = _bytes(body, p)
            name, _, text = self.schemas.get(sid, ("", "", ""))
            self.channels[cid] = SalvagedConnection(cid, topic, name, text, encoding or "cdr",
                                                    metadata)
        else:
            cid, _, log_time, _ = struct.unpack_from("<HIQQ", body, 0)
            scan = self.scan
            scan.messages += 1
            scan.first_ns = log_time if scan.first_ns is None else min(scan.first_ns, log_time)
            scan.last_ns = log_time if scan.last_ns is None else max(scan.last_ns, log_time)
            yield cid, log_time, bytes(body[22:])

    def _records(self, buf: memoryview, whole: bool) -> Iterator[tuple[int, int, bytes]]:
        """The records of a chunk's (decompressed) content; ``whole``: a record
        running past its end is damage, not the cut."""
        pos = 0
        while pos + 9 <= len(buf):
            op, length = buf[pos], struct.unpack_from("<Q", buf, pos + 1)[0]
            if pos + 9 + length > len(buf):
                if whole:
                    raise _CutError("a record runs past its chunk")
                return
            if op in (OP_SCHEMA, OP_CHANNEL, OP_MESSAGE):
                yield from self._record(op, buf[pos + 9:pos + 9 + length])
            pos += 9 + length

    def _chunk(self, body: memoryview) -> Iterator[tuple[int, int, bytes]]:
        _, _, size, crc = struct.unpack_from("<QQQI", body, 0)
        compression, p = _string(body, 28)
        (n,) = struct.unpack_from("<Q", body, p)
        if p + 8 + n > len(body):
            raise _CutError("a chunk's data runs past its record")
        raw = _decompress(bytes(body[p + 8:p + 8 + n]), compression, size, crc)
        yield from self._records(memoryview(raw), whole=True)

    def _cut_chunk(self, body: bytes) -> Iterator[tuple[int, int, bytes]]:
        """The messages at the start of the chunk the file ends in."""
        if len(body) < 28 + 4:
            return
        view = memoryview(body)
        try:
            compression, p = _string(view, 28)
        except _CutError:
            return
        if p + 8 > len(view):
            return
        yield from self._records(memoryview(_partial(bytes(view[p + 8:]), compression)),
                                 whole=False)


@dataclass
class Salvage:
    """The readable messages of a bag whose MCAP file(s) were cut short."""

    bag: Path
    files: list[McapScan]
    connections: list[SalvagedConnection] = field(default_factory=list)

    def messages(self, connections=None) -> Iterator[tuple[SalvagedConnection, int, bytes]]:
        """(connection, log time ns, raw CDR) in file order, like rosbags'
        ``Reader.messages``; topics of several files are one connection."""
        wanted = None if connections is None else {c.id for c in connections}
        by_key = {(c.topic, c.msgtype): c for c in self.connections}
        for scan in self.files:
            for cid, stamp, data in scan.messages():
                found = scan.channels.get(cid)
                if found is None:
                    continue
                conn = by_key[(found.topic, found.msgtype)]
                if wanted is None or conn.id in wanted:
                    yield conn, stamp, data

    def close(self) -> None:
        """Nothing is held open between reads (rosbags' Reader interface)."""

    def count(self) -> int:
        """Read every message once: the counts and times of ``describe``."""
        for scan in self.files:
            for _ in scan.messages():
                pass
        return sum(s.scan.messages for s in self.files)

    def describe(self) -> str:
        """One line: the bag is truncated, where, and what was salvaged."""
        cut = next(s.scan for s in self.files if not s.scan.complete)
        stamps = [t for s in self.files for t in (s.scan.first_ns, s.scan.last_ns)
                  if t is not None]
        span = f", the first {(max(stamps) - min(stamps)) / 1e9:.2f} s of the recording" \
            if stamps else ""
        return (f"{self.bag}: the bag is truncated: {cut.path.name} is readable up to byte "
                f"{cut.readable_to} of its {cut.size} (then {cut.reason}); "
                f"{sum(s.scan.messages for s in self.files)} messages salvaged{span}")


def _mcap_files(bag: Path) -> list[Path]:
    if bag.is_file():
        return [bag] if bag.suffix == ".mcap" else []
    listed: list[Path] = []
    meta = bag / "metadata.yaml"
    if meta.is_file():
        import yaml

        try:
            info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
            listed = [bag / p for p in info.get("relative_file_paths", [])]
        except Exception:                             # noqa: BLE001 - fall back to the folder
            listed = []
    files = [p for p in listed if p.suffix == ".mcap" and p.is_file()]
    return files or sorted(bag.glob("*.mcap"))


def salvage(bag: Path) -> Salvage | None:
    """The readable part of ``bag`` (an .mcap file or a rosbag2 folder of them)
    if an MCAP file of it is cut short or damaged after its start; None if it
    is not MCAP or nothing is wrong with its records. An InputError naming the
    bag if nothing at all can be read."""
    bag = Path(bag)
    files = [McapScan(p) for p in _mcap_files(bag)]
    if not files:
        return None
    with files[0].path.open("rb") as f:
        if f.read(8) != MAGIC:
            return None
    found = Salvage(bag, files)
    total = found.count()
    if all(s.scan.complete for s in files):
        return None
    keys: dict[tuple[str, str], SalvagedConnection] = {}
    for scan in files:
        for c in scan.channels.values():
            keys.setdefault((c.topic, c.msgtype), SalvagedConnection(
                len(keys) + 1, c.topic, c.msgtype, c.msgdef, c.serialization_format,
                c.qos_metadata))
    found.connections = list(keys.values())
    if not total:
        cut = next(s.scan for s in files if not s.scan.complete)
        raise InputError(f"{bag}: the bag is truncated and no message can be read from it "
                         f"({cut.path.name}: readable up to byte {cut.readable_to} of "
                         f"{cut.size}, then {cut.reason})")
    return found


def write_salvaged(found: Salvage, dest: Path) -> Path:
    """A rosbag2 (MCAP) folder at ``dest`` holding the salvaged messages, with
    its summary, so any reader (``stseg replay``) takes it."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.storage_mcap import get_qos
    from rosbags.typesys import Stores, get_types_from_idl, get_types_from_msg, get_typestore

    ts = get_typestore(Stores.ROS2_KILTED)
    dest.parent.mkdir(parents=True, exist_ok=True)
    out: dict[int, object] = {}
    with Writer(dest, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        for c in found.connections:
            if c.msgtype not in ts.fielddefs and c.msgdef:
                parse = get_types_from_idl if c.msgdef.startswith("=" * 80 + "\nIDL: ") \
                    else get_types_from_msg
                try:
                    ts.register(parse(c.msgdef, c.msgtype))
                except Exception:                     # noqa: BLE001 - topic left out below
                    pass
            if c.msgtype not in ts.fielddefs:
                log.warning("%s: topic %s (%s) left out of the salvaged copy: its type is "
                            "unknown", found.bag, c.topic, c.msgtype)
                continue
            out[c.id] = writer.add_connection(
                c.topic, c.msgtype, typestore=ts, serialization_format=c.serialization_format,
                offered_qos_profiles=get_qos(c.qos_metadata))
        for conn, stamp, data in found.messages():
            if conn.id in out:
                writer.write(out[conn.id], stamp, data)
    return dest
