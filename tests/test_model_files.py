"""Model files as users bring them: .keras files that are no RetinaNet, whose stored metadata is wrong, or whose zip
declares more than a model holds (a bomb), are one `ModelError` naming the file, refused before Keras reads or
builds them (and torch .pth files before their pickle is read); bin/export's --input_size is parsed strictly and
bounded."""

import json
import os
import subprocess
import sys
import zipfile

import keras
import pytest

from keras_retinanet.config import ConfigError, ExperimentConfig, to_dict
from keras_retinanet.inference import (
    MAX_MODEL_BYTES,
    MAX_MODEL_JSON_BYTES,
    MAX_ZIP_DIRECTORY_BYTES,
    ModelError,
    load_trained_model,
    model_data_config,
)
from tiny import tiny_retinanet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASS_NAMES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def retinanet_file(tmp_path_factory):
    """A tiny RetinaNet .keras file with the metadata bin/train stores."""
    model = tiny_retinanet(num_classes=3)
    model.metadata = {"class_names": CLASS_NAMES, "category_ids": [1, 5, 9], "config": to_dict(ExperimentConfig())}
    path = tmp_path_factory.mktemp("model") / "model.keras"
    model.save(path)
    return path


def _members(path):
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _write_zip(path, members, deflated=()):
    """A zip of `members` ({name: bytes}), stored as Keras stores them but for the `deflated` names."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data, zipfile.ZIP_DEFLATED if name in deflated else zipfile.ZIP_STORED)
    return path


def _with_metadata(source, path, **changes):
    """A copy of the .keras file `source` at `path` whose stored metadata has `changes` (None: the key removed)."""
    members = _members(source)
    config = json.loads(members["config.json"])
    metadata = config["config"]["metadata"]
    for key, value in changes.items():
        metadata.pop(key) if value is None else metadata.__setitem__(key, value)
    members["config.json"] = json.dumps(config)
    return _write_zip(path, members)


def _declare_sizes(path, member, size):
    """Makes the zip's member list declare `size` bytes (compressed and not) for `member`; the data stays."""
    data = bytearray(path.read_bytes())
    entry = data.index(b"PK\x01\x02")
    while data[entry + 46:entry + 46 + len(member)] != member.encode():
        entry = data.index(b"PK\x01\x02", entry + 1)
    data[entry + 20:entry + 28] = size.to_bytes(4, "little") * 2
    path.write_bytes(bytes(data))
    return path


def test_a_retinanet_file_with_its_metadata_loads(retinanet_file):
    model = load_trained_model(str(retinanet_file))
    assert model.metadata["class_names"] == CLASS_NAMES
    assert model_data_config(model) == ExperimentConfig().data


def test_a_keras_model_that_is_no_retinanet_is_refused_before_keras_builds_it(tmp_path, monkeypatch):
    path = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(path)

    def not_called(*args, **kwargs):
        raise AssertionError("Keras was asked to build the model")

    monkeypatch.setattr(keras.saving, "load_model", not_called)
    with pytest.raises(ModelError) as raised:
        load_trained_model(str(path))
    assert str(raised.value) == (f"{path}: cannot be loaded (not a RetinaNet detector, which bin/train and "
                                 "bin/convert_torchvision write: its model is a 'Sequential')")


@pytest.mark.parametrize("changes, cause", [
    ({"class_names": ["cat", "dog"]}, "class_names must be a list of 3 strings, one per class, got a list of 2"),
    ({"class_names": None}, "class_names must be a list of 3 strings, one per class, got None"),
    ({"class_names": ["cat", "dog", 7]}, "class_names must be a list of 3 strings, one per class, got a list of 3"),
    ({"category_ids": [1, 5, 9, 11]}, "category_ids must be a list of 3 distinct integers, one per class, got a list "
                                      "of 4"),
    ({"category_ids": [1, 1, 9]}, "category_ids must be a list of 3 distinct integers, one per class, got a list of 3"),
    ({"category_ids": "1,5,9"}, "category_ids must be a list of 3 distinct integers, one per class, got '1,5,9'"),
])
def test_wrong_label_metadata_is_named_with_the_file(retinanet_file, tmp_path, changes, cause):
    path = _with_metadata(retinanet_file, tmp_path / "labels.keras", **changes)
    with pytest.raises(ModelError) as raised:
        load_trained_model(str(path))
    assert str(raised.value) == f"{path}: its metadata's {cause}"


def test_a_missing_or_invalid_stored_config_is_named_with_the_file(retinanet_file, tmp_path):
    path = _with_metadata(retinanet_file, tmp_path / "no_config.keras", config=None)
    model = load_trained_model(str(path))  # exports with every resizing flag given need no config
    with pytest.raises(ModelError, match=f"^{path}: carries no experiment config"):
        model_data_config(model)
    path = _with_metadata(retinanet_file, tmp_path / "bad_config.keras", config={"data": {"min_sise": 3}})
    with pytest.raises(ConfigError, match=f"^{path}'s stored config: unknown key 'data.min_sise'"):
        load_trained_model(str(path))
    path = _with_metadata(retinanet_file, tmp_path / "list_config.keras", config=list(range(1000)))
    with pytest.raises(ModelError, match=rf"^{path}: its stored config must be a mapping, got \[0, 1, 2"):
        load_trained_model(str(path))


def test_zips_declaring_more_than_a_model_holds_are_refused_before_they_are_read(retinanet_file, tmp_path):
    """Each file is a few kilobytes: the bounds hold on what the zip declares, and compressed members (which zipfile
    would inflate past any size they declare) are refused whatever they declare."""
    members = _members(retinanet_file)
    inflating = _write_zip(tmp_path / "inflating.keras", {**members, "config.json": b" " * (MAX_MODEL_JSON_BYTES + 1)},
                           deflated={"config.json"})
    huge_weights = _declare_sizes(_write_zip(tmp_path / "huge_weights.keras", members), "model.weights.h5",
                                  MAX_MODEL_BYTES + 1)
    compressed = _write_zip(tmp_path / "compressed.keras", members, deflated={"config.json"})
    lying = _write_zip(tmp_path / "lying.keras", members)
    data = bytearray(lying.read_bytes())  # the member list declares a longer list than a model file has
    end = data.rindex(b"PK\x05\x06")
    data[end + 12:end + 16] = (MAX_ZIP_DIRECTORY_BYTES + 1).to_bytes(4, "little")
    lying.write_bytes(bytes(data))
    cases = [
        (inflating, f"member 'config.json' declares {MAX_MODEL_JSON_BYTES + 1} bytes, which takes the file over its "
                    f"limit ({MAX_MODEL_JSON_BYTES} bytes for it, {MAX_MODEL_BYTES} in all)"),
        (huge_weights, f"member 'model.weights.h5' declares {MAX_MODEL_BYTES + 1} bytes"),
        (compressed, "member 'config.json' is compressed (or declares two sizes); model files store their members"),
        (lying, f"its list of members declares {MAX_ZIP_DIRECTORY_BYTES + 1} bytes, more than the "
                f"{MAX_ZIP_DIRECTORY_BYTES} a model file may have"),
        (_write_zip(tmp_path / "no_config.keras", {"model.weights.h5": b""}), "not a Keras model (no config.json)"),
        (_write_zip(tmp_path / "not_json.keras", {**members, "config.json": b"{"}),
         "its config.json cannot be read (JSONDecodeError)"),
        (_write_zip(tmp_path / "deep.keras", {**members, "config.json": b"[" * 100_000}),
         "its config.json cannot be read (RecursionError)"),
    ]
    for path, cause in cases:
        assert os.path.getsize(path) < 500_000
        with pytest.raises(ModelError) as raised:
            load_trained_model(str(path))
        assert str(raised.value).startswith(f"{path}: {cause}"), str(raised.value)


def test_only_regular_keras_files_are_read(retinanet_file, tmp_path):
    weights = tmp_path / "model.h5"
    weights.write_bytes(retinanet_file.read_bytes())
    os.mkfifo(tmp_path / "fifo.keras")
    (tmp_path / "zero.keras").symlink_to("/dev/zero")
    cases = [(weights, f"{weights}: cannot be loaded (not a .keras file, which bin/train and bin/convert_torchvision "
                       "write)"),
             (tmp_path / "fifo.keras", f"no trained model at {tmp_path / 'fifo.keras'}"),
             (tmp_path / "zero.keras", f"no trained model at {tmp_path / 'zero.keras'}")]
    for path, message in cases:
        with pytest.raises(ModelError) as raised:
            load_trained_model(str(path))
        assert str(raised.value) == message


def _run(program, *args):
    result = subprocess.run([sys.executable, os.path.join(ROOT, "bin", program), *map(str, args)],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    return result.stderr.strip().splitlines()[-1]


def test_the_command_lines_name_the_model_file_or_the_input_size_in_one_line(retinanet_file, tmp_path):
    dense = tmp_path / "dense.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(dense)
    image = tmp_path / "image.png"
    image.write_bytes(b"")
    assert _run("predict", f"--model={dense}", f"--output_dir={tmp_path / 'out'}", image) == (
        f"error: {dense}: cannot be loaded (not a RetinaNet detector, which bin/train and bin/convert_torchvision "
        "write: its model is a 'Sequential')")
    assert _run("export", f"--model={retinanet_file}", f"--output={tmp_path / 'model.tflite'}", "--format=tflite",
                "--input_size=8000x8000") == (
        "error: --input_size=8000x8000 has 64000000 pixels, more than the model's data.max_image_pixels (50000000)")
    weights = _write_zip(tmp_path / "weights.pth", {"archive/data.pkl": bytes(1000)}, deflated={"archive/data.pkl"})
    output = f"--output={tmp_path / 'out.keras'}"
    assert _run("convert_torchvision", f"--weights={weights}", "--variant=v1", output) == (
        f"error: {weights}: member 'archive/data.pkl' is compressed (or declares two sizes); model files store their "
        "members as they are")  # checked before the pickle is read


def test_input_sizes_are_ascii_height_x_width_each_side_bounded():
    script = ("import sys; from keras_retinanet.cli.export import parse_input_size\n"
              "for text in sys.argv[1:]:\n"
              "    try: print(parse_input_size(text))\n"
              "    except Exception as error: print(type(error).__name__, error)\n")
    texts = ["320x240", "320X240", "8192x8192", "\u00b2x\u00b2", "\u0663\u0662\u0660x320", "100000x100000",
             "8193x320", "0x320", "320x", " 320x320", "320x320x3", "-1x320"]
    result = subprocess.run([sys.executable, "-c", script, *texts], capture_output=True, text=True, timeout=300,
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT})
    lines = result.stdout.splitlines()
    assert lines[:3] == ["(320, 240)", "(320, 240)", "(8192, 8192)"], result.stderr[-2000:]
    for text, line in zip(texts[3:], lines[3:], strict=True):
        assert line == ("ConfigError --input_size must be HEIGHTxWIDTH in pixels, each side 1 to 8192, e.g. 320x320, "
                        f"got {text!r}")
