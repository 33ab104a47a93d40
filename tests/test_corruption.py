"""Every kind of bad input is an error naming the file, the byte offset and what is wrong."""

import re
import struct

import numpy as np
import pytest
from conftest import make_dataset, random_scene

from gqn.cli import main
from gqn.data import SceneDataset, read_scenes, write_scenes
from gqn.data.tfrecord import decode_example, encode_example, frame_record, read_records
from gqn.errors import DataError


def three_scenes(path):
    write_scenes(path, [random_scene(np.random.default_rng(i), views=4, size=32) for i in range(3)])
    blob = path.read_bytes()
    offsets, pos = [], 0
    while pos < len(blob):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<Q", blob, pos)[0]
    return bytearray(blob), offsets


def raw_record_file(path, data_list):
    path.write_bytes(b"".join(frame_record(d) for d in data_list))
    return str(path)


def test_data_crc_mismatch_names_file_and_offset(tmp_path):
    path = tmp_path / "f.tfrecord"
    blob, offsets = three_scenes(path)
    blob[offsets[1] + 100] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(
        DataError, match=rf"f\.tfrecord at byte {offsets[1]}: corrupt record: data CRC mismatch"
    ):
        list(read_scenes(path))


def test_bad_header_crc_names_offset(tmp_path):
    blob = bytearray(frame_record(b"abc") + frame_record(b"def"))
    blob[19 + 9] ^= 1  # the second record's length CRC
    path = tmp_path / "bad.tfrecord"
    path.write_bytes(bytes(blob))
    with open(path, "rb") as f, pytest.raises(DataError, match=r"at byte 19: corrupt record header"):
        list(read_records(f, str(path)))


def test_skip_corrupt_reports_how_many(tmp_path):
    path = tmp_path / "f.tfrecord"
    blob, offsets = three_scenes(path)
    blob[offsets[1] + 100] ^= 0xFF
    path.write_bytes(bytes(blob))
    reader = read_scenes(path, skip_corrupt=True)
    with pytest.warns(UserWarning, match="skipped 1 corrupt record"):
        scenes = list(reader)
    assert len(scenes) == 2  # the records on both sides of the bad one
    assert len(reader.skipped) == 1 and reader.skipped[0].offset == offsets[1]


def test_truncated_file(tmp_path):
    path = tmp_path / "f.tfrecord"
    blob, offsets = three_scenes(path)
    path.write_bytes(bytes(blob[:-10]))
    with pytest.raises(DataError, match=rf"at byte {offsets[2]}: truncated record"):
        list(read_scenes(path))
    path.write_bytes(bytes(blob[: offsets[2] + 5]))
    with pytest.raises(DataError, match=rf"at byte {offsets[2]}: truncated record header \(5 of 12"):
        list(read_scenes(path))


def test_truncated_file_is_caught_when_indexing(tmp_path):
    path = tmp_path / "test" / "1-of-1.tfrecord"
    path.parent.mkdir()
    blob, offsets = three_scenes(path)
    path.write_bytes(bytes(blob[:-10]))
    with pytest.raises(DataError, match=rf"at byte {offsets[2]}: truncated record"):
        SceneDataset(path)


def test_record_without_frames(tmp_path):
    path = raw_record_file(tmp_path / "f.tfrecord", [encode_example({"cameras": np.zeros(5, np.float32)})])
    with pytest.raises(
        DataError, match=r"at byte 0: record is not a GQN scene: no 'frames' feature \(features: 'cameras'\)"
    ):
        list(read_scenes(path))


def test_frames_of_the_wrong_kind(tmp_path):
    data = encode_example({"frames": np.zeros(3, np.float32), "cameras": np.zeros(5, np.float32)})
    path = raw_record_file(tmp_path / "f.tfrecord", [data])
    with pytest.raises(DataError, match=r"'frames' is not a bytes list"):
        list(read_scenes(path))
    data = encode_example({"frames": [b"x"], "cameras": [b"0" * 20]})
    path = raw_record_file(tmp_path / "g.tfrecord", [data])
    with pytest.raises(DataError, match=r"'cameras' is not a float list"):
        list(read_scenes(path))


def test_wrong_number_of_cameras(tmp_path):
    scene = random_scene(np.random.default_rng(0), views=3, size=16)
    from gqn.data.scenes import encode_jpeg

    data = encode_example(
        {"frames": [encode_jpeg(f) for f in scene.frames], "cameras": np.zeros(14, np.float32)}
    )
    good = encode_example(
        {"frames": [encode_jpeg(f) for f in scene.frames], "cameras": np.zeros(15, np.float32)}
    )
    path = raw_record_file(tmp_path / "f.tfrecord", [good, data])
    offset = 16 + len(good)
    with pytest.raises(DataError, match=rf"at byte {offset}: .*3 frames but 14 camera values \(expected 15"):
        list(read_scenes(path))


def test_undecodable_jpeg(tmp_path):
    data = encode_example({"frames": [b"\xff\xd8 not really a jpeg"], "cameras": np.zeros(5, np.float32)})
    path = raw_record_file(tmp_path / "f.tfrecord", [data])
    with pytest.raises(DataError, match=r"at byte 0: undecodable JPEG in view 0"):
        list(read_scenes(path))


def test_not_a_protobuf(tmp_path):
    path = raw_record_file(tmp_path / "f.tfrecord", [b"\x0a\x7fshort"])
    with pytest.raises(DataError, match=r"at byte 0: record is not a tf.train.Example"):
        list(read_scenes(path))


def test_decoder_rejects_a_truncated_message():
    # The decoder says what is wrong; its callers add the file and offset (test_not_a_protobuf).
    message = encode_example({"frames": [b"abc"], "cameras": np.zeros(5, np.float32)})
    with pytest.raises(ValueError):
        decode_example(message[:-3])


def test_empty_split_folder(tmp_path):
    (tmp_path / "shepard_metzler_5_parts" / "train").mkdir(parents=True)
    with pytest.raises(DataError, match=r"shepard_metzler_5_parts/train: no \.tfrecord files"):
        SceneDataset(tmp_path / "shepard_metzler_5_parts")


def test_misnamed_folder(tmp_path):
    make_dataset(tmp_path)
    for split in ("train", "test"):
        (tmp_path / "shepard_metzler_5_parts" / split).rename(
            tmp_path / "shepard_metzler_5_parts" / f"{split}ing"
        )
    with pytest.raises(DataError, match=r"no GQN data here \(found: testing, training\)"):
        SceneDataset(tmp_path / "shepard_metzler_5_parts")


def test_missing_split(tmp_path):
    make_dataset(tmp_path)
    with pytest.raises(
        DataError, match=r"expected one dataset with a 'valid' split, found: .*/train, .*/test"
    ):
        SceneDataset(tmp_path / "shepard_metzler_5_parts", split="valid")


def test_dataset_skip_corrupt_replaces_the_scene(dataset_dir):
    path = dataset_dir / "train" / "2-of-3.tfrecord"
    blob = bytearray(path.read_bytes())
    blob[200] ^= 0xFF  # inside the first record's data
    path.write_bytes(bytes(blob))
    ds = SceneDataset(dataset_dir, skip_corrupt=True)
    with pytest.warns(UserWarning, match="skipping corrupt scene 4"):
        scene = ds[4]
    np.testing.assert_array_equal(scene.cameras, ds[5].cameras)
    strict = SceneDataset(dataset_dir)
    with pytest.raises(DataError, match=r"2-of-3\.tfrecord at byte 0: corrupt record: data CRC"):
        strict[4]


def test_cli_verify_reports_corruption_in_one_line_per_problem(dataset_dir, capsys):
    path = dataset_dir / "test" / "1-of-2.tfrecord"
    blob = bytearray(path.read_bytes())
    blob[300] ^= 0xFF
    path.write_bytes(bytes(blob))
    assert main(["data", "verify", str(dataset_dir), "--workers", "1"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert re.match(r"problem: .*test/1-of-2\.tfrecord at byte 0: corrupt record: data CRC mismatch", out[0])
    assert re.fullmatch(r"5 files, 19 scenes, [\d.]+ KB: 1 problem\(s\)", out[-1])


def test_cli_error_is_one_line_without_traceback(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("gqn: error: ") and "nowhere: no such file or folder" in err
