"""The TFRecord framing and the Example encoding, against known answers from real files."""

import io
import struct

import google_crc32c
import numpy as np

from gqn.data.tfrecord import (
    decode_example,
    encode_example,
    frame_record,
    masked_crc32c,
    read_records,
    scan_records,
)


def test_crc32c_known_answers():
    # The CRC-32C check value of the standard test string, and TFRecord's masking of it.
    assert google_crc32c.value(b"123456789") == 0xE3069283
    crc = 0xE3069283
    assert masked_crc32c(b"123456789") == ((((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF)


def test_masked_crcs_of_the_real_reference_file(reference_file):
    blob = open(reference_file, "rb").read()
    (length,) = struct.unpack_from("<Q", blob)
    assert length == 21301
    # Header and footer CRCs as DeepMind's writer put them in the file.
    assert masked_crc32c(blob[:8]) == 0xF5555205 == struct.unpack_from("<I", blob, 8)[0]
    assert (
        masked_crc32c(blob[12 : 12 + length]) == 0x63B79167 == struct.unpack_from("<I", blob, 12 + length)[0]
    )


def test_example_encoding_is_byte_identical_to_the_real_file(reference_file):
    blob = open(reference_file, "rb").read()
    data = blob[12:-4]
    features = decode_example(data)
    assert list(features) == ["frames", "cameras"]
    again = encode_example({"frames": [bytes(f) for f in features["frames"]], "cameras": features["cameras"]})
    assert again == data
    assert frame_record(again) == blob


def test_records_round_trip_with_offsets():
    payloads = [b"", b"a", b"x" * 1000]
    f = io.BytesIO(b"".join(frame_record(p) for p in payloads))
    records = list(read_records(f, "mem"))
    assert [d for _, d in records] == payloads
    assert [o for o, _ in records] == [0, 16, 33]


def test_scan_records_reads_headers_only(tmp_path):
    path = tmp_path / "r.tfrecord"
    path.write_bytes(b"".join(frame_record(b"y" * n) for n in (5, 0, 7)))
    with open(path, "rb") as f:
        assert list(scan_records(f, str(path))) == [(0, 5), (21, 0), (37, 7)]


def test_decoder_accepts_unpacked_floats_and_int64s():
    # FloatList with one fixed32 field per value (legal, though TensorFlow packs them).
    floats = b"".join(b"\x0d" + struct.pack("<f", v) for v in (1.5, -2.0))
    feature = b"\x12" + bytes([len(floats)]) + floats
    ints = b"\x1a\x05\x0a\x03\x03\x81\x01"  # Int64List packed: 3, then 129 as a two-byte varint

    def entry(key, value):
        body = b"\x0a" + bytes([len(key)]) + key + b"\x12" + bytes([len(value)]) + value
        return b"\x0a" + bytes([len(body)]) + body

    entries = entry(b"f", feature) + entry(b"i", ints)
    message = b"\x0a" + bytes([len(entries)]) + entries
    out = decode_example(message)
    np.testing.assert_array_equal(out["f"], [1.5, -2.0])
    assert out["f"].dtype == np.float32
    assert out["i"] == [3, 129]
