"""A Perfetto trace file, packet by packet.

The file is one serialised ``perfetto.protos.Trace``: a repeated
``TracePacket packet = 1``, each written as a tag, a varint length and the
packet's bytes. Reading the framing ourselves keeps one packet in memory at
a time (``Trace.FromString`` would hold the whole file). A packet whose
``compressed_packets`` holds a deflated ``Trace`` (traced's
``compression_type: DEFLATE``) is expanded in place.
"""

import io
import zlib
from typing import BinaryIO, Iterator

from google.protobuf.message import DecodeError
from perfetto.protos.perfetto.trace import perfetto_trace_pb2 as pb

#: ``Trace.packet``'s field number and the length-delimited wire type.
PACKET_FIELD, LENGTH_DELIMITED = 1, 2
#: A packet larger than this is not a packet (traced's chunks are at most
#: a few MB; a corrupt length would make us read the whole file).
MAX_PACKET = 256 << 20


class TraceError(Exception):
    """The file is not a readable Perfetto trace: one line for the user."""


def _varint(f: BinaryIO, where: str, at_boundary: bool = False):
    """The next varint; None at the end of the file when ``at_boundary``."""
    shift = value = 0
    while True:
        b = f.read(1)
        if not b:
            if at_boundary and shift == 0:
                return None
            raise TraceError(f"{where}: truncated (the file ends inside a packet header)")
        value |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return value
        shift += 7
        if shift > 63:
            raise TraceError(f"{where}: not a Perfetto trace (a varint longer than 10 bytes)")


def _skip(f: BinaryIO, wire: int, where: str) -> None:
    """Skip a top-level field that is not a packet."""
    if wire == 0:
        _varint(f, where)
    elif wire in (1, 5):
        f.read(8 if wire == 1 else 4)
    elif wire == LENGTH_DELIMITED:
        f.seek(_varint(f, where), io.SEEK_CUR)
    else:
        raise TraceError(f"{where}: not a Perfetto trace (wire type {wire} at the top level)")


def packets(path: str) -> Iterator[pb.TracePacket]:
    """Every TracePacket of the trace at ``path``, in file order."""
    try:
        f = open(path, "rb", buffering=1 << 20)
    except OSError as e:
        raise TraceError(f"{path}: {e.strerror}") from e
    with f:
        yield from _packets(f, path)


def _packets(f: BinaryIO, where: str) -> Iterator[pb.TracePacket]:
    index = 0
    while True:
        tag = _varint(f, where, at_boundary=True)
        if tag is None:
            return
        field, wire = tag >> 3, tag & 7
        if field != PACKET_FIELD or wire != LENGTH_DELIMITED:
            if field == 0:
                raise TraceError(f"{where}: not a Perfetto trace (field 0 at the top level)")
            _skip(f, wire, where)
            continue
        size = _varint(f, where)
        if size > MAX_PACKET:
            raise TraceError(f"{where}: not a Perfetto trace (a packet of {size} bytes)")
        data = f.read(size)
        if len(data) < size:
            raise TraceError(f"{where}: truncated (packet {index} has {len(data)} of its {size} bytes)")
        try:
            packet = pb.TracePacket.FromString(data)
        except DecodeError as e:
            raise TraceError(f"{where}: packet {index} does not decode as a TracePacket ({e})") from e
        index += 1
        if packet.HasField("compressed_packets"):
            try:
                inner = zlib.decompress(packet.compressed_packets)
            except zlib.error as e:
                raise TraceError(f"{where}: packet {index - 1}: compressed packets do not inflate ({e})") from e
            yield from _packets(io.BytesIO(inner), f"{where} (packet {index - 1}, compressed)")
        elif packet.HasField("zstd_compressed_packets"):
            raise TraceError(f"{where}: packet {index - 1} is zstd-compressed; record with "
                             "compression_type DEFLATE or none (docs/android.md)")
        else:
            yield packet
