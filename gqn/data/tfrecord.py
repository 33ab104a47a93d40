"""TFRecord files and `tf.train.Example` messages, read and written without TensorFlow.

A TFRecord file is a sequence of records, each framed as

    uint64 length | uint32 masked_crc32c(length) | data[length] | uint32 masked_crc32c(data)

(all little-endian). `data` here is a serialized `tf.train.Example`:

    Example { Features features = 1; }
    Features { map<string, Feature> feature = 1; }
    Feature { oneof { BytesList bytes_list = 1; FloatList float_list = 2; Int64List int64_list = 3; } }
    BytesList { repeated bytes value = 1; }  FloatList { repeated float value = 1 [packed]; }

We encode exactly what TensorFlow's writer produces for a GQN Example (features in the order given,
floats packed), so files we write are byte-identical to TensorFlow's. The decoder accepts any valid
encoding (packed or not, unknown fields skipped).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from typing import BinaryIO

import google_crc32c
import numpy as np

from gqn.errors import DataError

HEADER_BYTES = 12  # uint64 length + uint32 masked CRC of the length
FOOTER_BYTES = 4  # uint32 masked CRC of the data
_MASK_DELTA = 0xA282EAD8


def masked_crc32c(data: bytes | memoryview) -> int:
    """TFRecord's CRC: CRC-32C (Castagnoli, hardware where available), rotated and offset."""
    crc = google_crc32c.value(bytes(data) if isinstance(data, memoryview) else data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# ----------------------------------------------------------------------------------------------
# Framing


def frame_record(data: bytes) -> bytes:
    """One record's bytes on disk: header, data, footer."""
    length = struct.pack("<Q", len(data))
    return b"".join(
        (
            length,
            struct.pack("<I", masked_crc32c(length)),
            data,
            struct.pack("<I", masked_crc32c(data)),
        )
    )


def read_header(f: BinaryIO, path: str, offset: int) -> int | None:
    """Read and check the 12-byte header at `offset` (where `f` is positioned).

    Returns the data length, or None at a clean end of file.
    """
    header = f.read(HEADER_BYTES)
    if not header:
        return None
    if len(header) < HEADER_BYTES:
        raise DataError(path, f"truncated record header ({len(header)} of 12 bytes)", offset)
    (length,) = struct.unpack_from("<Q", header)
    (crc,) = struct.unpack_from("<I", header, 8)
    if crc != masked_crc32c(header[:8]):
        raise DataError(path, "corrupt record header: length CRC mismatch", offset)
    return length


def check_data(path: str, offset: int, data: bytes, footer: bytes, length: int) -> None:
    """Check a record's data (read from `offset + 12`) and footer against the header's length."""
    if len(data) < length or len(footer) < FOOTER_BYTES:
        got = HEADER_BYTES + len(data) + len(footer)
        raise DataError(
            path,
            f"truncated record: header says {length + HEADER_BYTES + FOOTER_BYTES} bytes, file has {got}",
            offset,
        )
    (crc,) = struct.unpack("<I", footer)
    if crc != masked_crc32c(data):
        raise DataError(path, "corrupt record: data CRC mismatch", offset)


def check_fits(path: str, offset: int, length: int, size: int) -> None:
    """A record of `length` data bytes at `offset` must end within the file's `size` bytes: a
    length field that claims more (a valid CRC does not make it true) is a truncated record, never
    a read of that many bytes."""
    end = offset + HEADER_BYTES + length + FOOTER_BYTES
    if end > size:
        raise DataError(
            path, f"truncated record: header says {end - offset} bytes, file has {size - offset}", offset
        )


def scan_records(f: BinaryIO, path: str) -> Iterator[tuple[int, int]]:
    """Yield (offset, length) of every record, checking headers and sizes but not data CRCs.

    This reads only the 12-byte headers and seeks past the data, so indexing a file costs a few
    small reads per record. A record whose data would run past the end of the file is an error.
    At each yield `f` stands at the record's data, which the caller may read (`read_records`
    does): the next header is sought from the offsets, wherever the caller left `f`.
    """
    size = f.seek(0, os.SEEK_END)
    offset = 0
    f.seek(0)
    while (length := read_header(f, path, offset)) is not None:
        check_fits(path, offset, length, size)
        yield offset, length
        offset += HEADER_BYTES + length + FOOTER_BYTES
        f.seek(offset)


def read_records(
    f: BinaryIO, path: str, yield_bad_data: bool = False
) -> Iterator[tuple[int, bytes | DataError]]:
    """Yield (offset, data) of every record in order, every CRC checked.

    A bad header or a truncated record raises: nothing after it can be found. A record whose data
    fails its CRC raises too, or with `yield_bad_data` is yielded as (offset, DataError) and
    reading goes on with the next record, which the sound header still locates.
    """
    for offset, length in scan_records(f, path):
        data = f.read(length)
        footer = f.read(FOOTER_BYTES)
        try:
            check_data(path, offset, data, footer, length)
        except DataError as e:
            if not yield_bad_data or len(data) < length or len(footer) < FOOTER_BYTES:
                raise
            data = e
        yield offset, data


# ----------------------------------------------------------------------------------------------
# Protocol buffer wire format: the few pieces an Example needs.


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def encode_example(features: dict[str, list[bytes] | np.ndarray]) -> bytes:
    """Serialize a `tf.train.Example`: bytes lists for lists of bytes, float lists for arrays.

    Features are written in the order given, floats as little-endian float32, packed, as
    TensorFlow does.
    """
    entries = []
    for key, value in features.items():
        if isinstance(value, np.ndarray):
            floats = np.ascontiguousarray(value, dtype="<f4").tobytes()
            feature = _field(2, _field(1, floats) if floats else b"")
        else:
            feature = _field(1, b"".join(_field(1, bytes(v)) for v in value))
        entries.append(_field(1, _field(1, key.encode()) + _field(2, feature)))
    return _field(1, b"".join(entries))


def _read_varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("varint runs past the end of the message")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, object]]:
    """Yield (field number, wire type, value) where value is an int or a memoryview slice."""
    pos = 0
    end = len(buf)
    while pos < end:
        key, pos = _read_varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(buf, pos)
        elif wire == 2:
            n, pos = _read_varint(buf, pos)
            if pos + n > end:
                raise ValueError(f"field {number} runs past the end of the message")
            value = buf[pos : pos + n]
            pos += n
        elif wire == 5:
            value = buf[pos : pos + 4]
            pos += 4
        elif wire == 1:
            value = buf[pos : pos + 8]
            pos += 8
        else:
            raise ValueError(f"unsupported wire type {wire} for field {number}")
        if pos > end:
            raise ValueError(f"field {number} runs past the end of the message")
        yield number, wire, value


def _decode_feature(buf: memoryview) -> list[memoryview] | np.ndarray | list[int]:
    for number, _, kind in _fields(buf):
        if number == 1:  # BytesList
            return [v for n, w, v in _fields(kind) if n == 1 and w == 2]
        if number == 2:  # FloatList: packed (wire 2) or one float per field (wire 5)
            parts = [bytes(v) for n, _, v in _fields(kind) if n == 1]
            return np.frombuffer(b"".join(parts), dtype="<f4")
        if number == 3:  # Int64List, packed or not
            out: list[int] = []
            for n, w, v in _fields(kind):
                if n != 1:
                    continue
                if w == 0:
                    out.append(v)
                else:
                    pos = 0
                    while pos < len(v):
                        x, pos = _read_varint(v, pos)
                        out.append(x)
            return out
    return []


def decode_example(data: bytes | memoryview) -> dict[str, list[memoryview] | np.ndarray | list[int]]:
    """Parse a serialized `tf.train.Example` into {name: bytes views | float32 array | ints}.

    Raises ValueError on a malformed message; callers add the file and offset.
    """
    buf = memoryview(data)
    features: dict = {}
    for number, wire, value in _fields(buf):
        if number != 1 or wire != 2:
            continue
        for n, w, entry in _fields(value):
            if n != 1 or w != 2:
                continue
            key, feature = None, memoryview(b"")
            for en, _, ev in _fields(entry):
                if en == 1:
                    key = bytes(ev).decode("utf-8", "replace")
                elif en == 2:
                    feature = ev
            if key is not None:
                features[key] = _decode_feature(feature)
    return features
