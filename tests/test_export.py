"""The SavedModel export for TF Serving: signatures, saved_model_cli, a process without the package, bad requests."""

import io
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_retinanet.export import export_saved_model
from keras_retinanet.layers import DetectionDecoder
from keras_retinanet.inference import detect, load_trained_model, model_data_config

from tiny import TINY_MODEL_YAML, copy_of_trained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")

# The shared tiny model's experiment (tiny.TRAINED_TINY_CONFIG) with this module's input sizes and splits.
TINY_CONFIG = TINY_MODEL_YAML + """  decoder: {score_threshold: 0.3, pre_nms_top_k: 100, max_detections: 40}
data:
  train: {annotations: DATA/annotations/instances_train.json, images: DATA/train}
  min_size: 128
  max_size: 256
  max_boxes: 8
train:
  batch_size: 4
  iterations: 2
  warmup_iterations: 1
  lr_steps: [2]
  checkpoint_every: 2
  eval_every: 2
"""
MAX_DETECTIONS = 40

# (height, width): resized by 1.28 and padded on the right; resized and padded at the bottom; kept as is;
# shrunk with the longer side capped.
IMAGE_SIZES = {"wide": (100, 190), "tall": (240, 130), "square": (128, 128), "large": (300, 520)}

# Runs with `python -I -S`: no site-packages .pth files (so no editable install of keras_retinanet), no
# PYTHONPATH, no script folder; only the folder holding TensorFlow is put back on sys.path.
FRESH_PROCESS_SCRIPT = """
import importlib.util, json, sys
sys.path.append(sys.argv[1])
assert importlib.util.find_spec("keras_retinanet") is None, "keras_retinanet is importable"
try:
    import keras_retinanet
except ModuleNotFoundError:
    pass
else:
    raise AssertionError("keras_retinanet was imported")
import numpy as np
import tensorflow as tf

export_dir, batch_path, outputs_path = sys.argv[2:5]
encoded_images = []
for path in sys.argv[5:]:
    with open(path, "rb") as stream:
        encoded_images.append(stream.read())
loaded = tf.saved_model.load(export_dir)
outputs = {}
batch = loaded.signatures["serving_default"](images=tf.constant(np.load(batch_path)))
outputs.update({"batch/" + key: value.numpy() for key, value in batch.items()})
encoded = loaded.signatures["image_bytes"](encoded_images=tf.constant(encoded_images))
outputs.update({"encoded/" + key: value.numpy() for key, value in encoded.items()})
with open(loaded.label_map_json.asset_path.numpy().decode()) as stream:
    outputs["label_map"] = np.array(json.dumps(json.load(stream)))
np.savez(outputs_path, **outputs)
"""


def encode(image, format="PNG", **options):
    stream = io.BytesIO()
    Image.fromarray(image).save(stream, format=format, **options)
    return stream.getvalue()


@pytest.fixture(scope="module")
def exported(trained_tiny, tmp_path_factory):
    """The session's tiny model (trained by `train` for two iterations), storing this module's TINY_CONFIG (its
    input sizes), exported with bin/export and its defaults."""
    root = tmp_path_factory.mktemp("export")
    model, data, model_dir = copy_of_trained(trained_tiny, root, TINY_CONFIG)

    export_dir = root / "saved_model"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "export"), f"--model_dir={model_dir}", f"--output={export_dir}"],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 0, result.stderr[-4000:]

    # Test images: training pictures (shapes on noisy backgrounds: no two places look alike) resized to other sizes.
    images = {}
    sources = sorted((data / "train").iterdir())
    for source, (name, (height, width)) in zip(sources, [*IMAGE_SIZES.items(), ("wide_b", IMAGE_SIZES["wide"])]):
        images[name] = np.asarray(Image.open(source).convert("RGB").resize((width, height), Image.BILINEAR))
    paths = {}
    (root / "images").mkdir()
    for name, image in images.items():
        paths[name] = str(root / "images" / f"{name}.png")
        Image.fromarray(image).save(paths[name])
    return {"root": root, "model": model, "dir": str(export_dir), "images": images, "paths": paths,
            "category_ids": np.array(model.metadata["category_ids"]), "class_names": model.metadata["class_names"]}


@pytest.fixture(scope="module")
def reference(exported):
    """`model.predict` detections of each test image on its own, in original pixels (`detect`, batch size 1)."""
    names = list(exported["paths"])
    model = exported["model"]
    detections = detect(model, [exported["paths"][n] for n in names], model_data_config(model), batch_size=1)
    return {name: {key: value[i] for key, value in detections.items()} for i, name in enumerate(names)}


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(exported["dir"])


def assert_same_detections(outputs, index, expected, image_size, category_ids):
    """Exported outputs (row `index`) against `detect`'s detections of the same image."""
    count = int(expected["num_detections"])
    assert count > 5, "too few detections to compare"
    assert int(outputs["num_detections"][index]) == count
    height, width = image_size
    boxes = np.asarray(outputs["detection_boxes"][index])
    np.testing.assert_allclose(
        boxes[:count][:, [1, 0, 3, 2]], expected["boxes"][:count] / [width, height, width, height], atol=1e-3
    )
    np.testing.assert_allclose(outputs["detection_scores"][index][:count], expected["scores"][:count], atol=1e-4)
    np.testing.assert_array_equal(outputs["detection_classes"][index][:count],
                                  category_ids[expected["classes"][:count]])
    assert not boxes[count:].any() and not np.asarray(outputs["detection_scores"][index][count:]).any()
    assert (np.asarray(outputs["detection_classes"][index][count:]) == -1).all()


def signature_blocks(show_output):
    """{signature name: its text} from `saved_model_cli show --all`."""
    parts = re.split(r"signature_def\['([^']+)'\]:", show_output)
    return dict(zip(parts[1::2], parts[2::2]))


def test_saved_model_cli_show_lists_both_signatures(exported):
    result = subprocess.run([SAVED_MODEL_CLI, "show", "--dir", exported["dir"], "--all"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    blocks = signature_blocks(result.stdout)
    inputs = {"serving_default": r"inputs\['images'\] tensor_info:\s+dtype: DT_UINT8\s+shape: \(-1, -1, -1, 3\)",
              "image_bytes": r"inputs\['encoded_images'\] tensor_info:\s+dtype: DT_STRING\s+shape: \(-1\)"}
    outputs = {"detection_boxes": f"(-1, {MAX_DETECTIONS}, 4)", "detection_scores": f"(-1, {MAX_DETECTIONS})",
               "detection_classes": f"(-1, {MAX_DETECTIONS})", "num_detections": "(-1)"}
    for name, input_pattern in inputs.items():
        block = blocks[name]
        assert re.search(input_pattern, block), block
        assert len(re.findall(r"inputs\['", block)) == 1
        for output, shape in outputs.items():
            assert re.search(rf"outputs\['{output}'\] tensor_info:\s+dtype: DT_FLOAT\s+shape: {re.escape(shape)}",
                             block), block
        assert len(re.findall(r"outputs\['", block)) == len(outputs)


def test_saved_model_cli_run_gives_predict_detections(exported, reference, tmp_path):
    batch = np.stack([exported["images"]["wide"], exported["images"]["wide_b"]])
    np.save(tmp_path / "batch.npy", batch)
    result = subprocess.run(
        [SAVED_MODEL_CLI, "run", "--dir", exported["dir"], "--tag_set", "serve", "--signature_def", "serving_default",
         "--inputs", f"images={tmp_path / 'batch.npy'}", "--outdir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = {key: np.load(tmp_path / "out" / f"{key}.npy")
               for key in ("detection_boxes", "detection_scores", "detection_classes", "num_detections")}
    for index, name in enumerate(("wide", "wide_b")):
        assert_same_detections(outputs, index, reference[name], IMAGE_SIZES["wide"], exported["category_ids"])


def test_a_process_without_the_package_gets_predict_detections(exported, reference, tmp_path):
    names = list(IMAGE_SIZES)
    np.save(tmp_path / "batch.npy", np.stack([exported["images"]["wide"], exported["images"]["wide_b"]]))
    script = tmp_path / "client.py"
    script.write_text(FRESH_PROCESS_SCRIPT)
    site_packages = os.path.dirname(os.path.dirname(tf.__file__))
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(script), site_packages, exported["dir"], str(tmp_path / "batch.npy"),
         str(tmp_path / "outputs.npz"), *[exported["paths"][n] for n in names]],
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = np.load(tmp_path / "outputs.npz")
    batch = {key.split("/")[1]: outputs[key] for key in outputs.files if key.startswith("batch/")}
    encoded = {key.split("/")[1]: outputs[key] for key in outputs.files if key.startswith("encoded/")}
    category_ids = exported["category_ids"]
    for index, name in enumerate(("wide", "wide_b")):
        assert_same_detections(batch, index, reference[name], IMAGE_SIZES[name.split("_")[0]], category_ids)
    for index, name in enumerate(names):
        assert_same_detections(encoded, index, reference[name], IMAGE_SIZES[name], category_ids)
    label_map = json.loads(str(outputs["label_map"]))
    assert label_map == {str(i): n for i, n in zip(category_ids.tolist(), exported["class_names"])}


def test_a_mixed_batch_of_encoded_images_equals_single_requests(exported, loaded):
    serve = loaded.signatures["image_bytes"]
    encoded = [encode(exported["images"]["tall"]), encode(exported["images"]["large"], "JPEG"),
               encode(exported["images"]["square"])]
    batch = serve(encoded_images=tf.constant(encoded))
    assert batch["detection_boxes"].shape == (3, MAX_DETECTIONS, 4)
    for index, image in enumerate(encoded):
        single = serve(encoded_images=tf.constant([image]))
        for key, value in single.items():
            np.testing.assert_allclose(batch[key][index], value[0], atol=1e-6, err_msg=key)


def test_grayscale_and_rgba_pngs_are_read_as_rgb(exported, loaded):
    serve = loaded.signatures["image_bytes"]
    rgb = exported["images"]["wide"]
    gray = rgb[..., 1]
    rgba = np.concatenate([rgb, np.random.default_rng(0).integers(0, 256, rgb.shape[:2] + (1,), np.uint8)], axis=-1)
    outputs = serve(encoded_images=tf.constant([encode(gray), encode(np.repeat(gray[..., None], 3, axis=-1)),
                                                encode(rgba), encode(rgb)]))
    assert outputs["num_detections"][0] > 0 and outputs["num_detections"][2] > 0
    for key, value in outputs.items():
        np.testing.assert_allclose(value[0], value[1], atol=1e-6, err_msg=key)  # grayscale = gray RGB
        np.testing.assert_allclose(value[2], value[3], atol=1e-6, err_msg=key)  # RGBA = its RGB


def test_bytes_that_are_no_image_fail_and_the_model_keeps_serving(exported, loaded):
    serve = loaded.signatures["image_bytes"]
    good = tf.constant([encode(exported["images"]["square"])])
    before = serve(encoded_images=good)
    with pytest.raises(tf.errors.InvalidArgumentError, match="not an image of a format whose size can be checked"):
        serve(encoded_images=tf.constant([b"these bytes are not an image"]))
    after = serve(encoded_images=good)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value, err_msg=key)


def test_label_map_assets(exported):
    assets = os.path.join(exported["dir"], "assets")
    expected = {str(i): n for i, n in zip(exported["category_ids"].tolist(), exported["class_names"])}
    assert set(expected) == {"13", "23", "33", "43"}
    with open(os.path.join(assets, "label_map.json")) as stream:
        assert json.load(stream) == expected
    with open(os.path.join(assets, "label_map.pbtxt")) as stream:
        items = re.findall(r'item \{\s+id: (\d+)\s+name: "([^"]*)"\s+display_name: "([^"]*)"\s+\}', stream.read())
    assert {i: n for i, n, _ in items} == expected and all(n == d for _, n, d in items)


def test_export_settings_override_the_model(exported, tmp_path):
    """Exported with other thresholds, it gives what predict gives with a decoder of those thresholds; a small
    pre_nms_top_k (the decoder's, kept by the export) makes the per-level candidate selection count."""
    model = load_trained_model(str(exported["root"] / "model"))
    model.decoder = DetectionDecoder(score_threshold=0.3, pre_nms_top_k=8, iou_threshold=0.5, max_detections=40)
    export_saved_model(model, str(tmp_path / "saved_model"), score_threshold=0.5, iou_threshold=0.4, max_detections=25)
    model.decoder = DetectionDecoder(score_threshold=0.5, pre_nms_top_k=8, iou_threshold=0.4, max_detections=25)
    name = "large"
    expected = detect(model, [exported["paths"][name]], model_data_config(model), batch_size=1)
    outputs = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"](
        images=tf.constant(exported["images"][name][None])
    )
    outputs = {key: value.numpy() for key, value in outputs.items()}
    assert outputs["detection_boxes"].shape == (1, 25, 4)
    count = int(outputs["num_detections"][0])
    assert count < 25, "the detections are cut at max_detections, not by the per-level top-k"
    assert_same_detections(outputs, 0, {key: value[0] for key, value in expected.items()}, IMAGE_SIZES[name],
                           exported["category_ids"])
    assert (outputs["detection_scores"][0, :count] > 0.5).all()


def png_bomb(width, height):
    """A real PNG of width x height black RGB pixels, compressed to a few hundred kilobytes (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor, row, parts = zlib.compressobj(9), b"\0" * (1 + 3 * width), []
    for _ in range(height):
        parts.append(compressor.compress(row))
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def _declaring(format, width, height):
    """A small image of `format` whose header is edited to declare width x height (the rest left as it was)."""
    import struct

    data = bytearray(encode(np.zeros((8, 8, 3), np.uint8), format, **({"lossless": True} if format == "WEBP" else {})))
    if format == "PNG":
        data[16:24] = struct.pack(">II", width, height)
    elif format == "GIF":
        data[6:10] = struct.pack("<HH", width, height)
    elif format == "BMP":
        data[18:26] = struct.pack("<ii", width, -height)  # top-down rows: a negative height
    elif format == "WEBP":  # VP8L: 14-bit width - 1 and height - 1 after the signature byte
        bits = struct.unpack("<I", bytes(data[21:25]))[0] & ~(2**28 - 1)
        data[21:25] = struct.pack("<I", bits | (width - 1) | (height - 1) << 14)
    elif format == "JPEG":
        at = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
        data[at + 5:at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("format", ["PNG", "GIF", "BMP", "WEBP", "JPEG"])
def test_images_over_the_pixel_limit_are_refused_from_their_header(exported, loaded, format):
    """Every format's declared size is read before decoding: 12000 x 9000 is over the 50 MP default limit."""
    serve = loaded.signatures["image_bytes"]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        serve(encoded_images=tf.constant([_declaring(format, 12000, 9000)]))
    assert ("encoded_images: an image of 12000 x 9000 pixels (width x height) in 1 frame(s) is over the limit of "
            "50000000 pixels "
            "set at export (bin/export --max_image_pixels)") in str(error.value)
    small = serve(encoded_images=tf.constant([_declaring(format, 8, 8)]))  # the edit itself is harmless
    assert small["detection_boxes"].shape[0] == 1


def test_gif_frames_animations_and_formats_without_a_size_are_refused_before_decoding(exported, loaded):
    """What the GIF decoder allocates counts, not the logical screen (64 x 64 declared, an 8000 x 8000 frame inside)
    nor one frame of an animation (60 frames of 1000 x 1000, each within the limit); a JPEG XL (TensorFlow decodes
    it, but its size cannot be read first) is refused."""
    from test_image_header import JPEG_XL_CODESTREAM, gif

    serve = loaded.signatures["image_bytes"]
    for data, message in (
        (gif([(8000, 8000)], screen=(64, 64)), "an image of 8000 x 8000 pixels (width x height) in 1 frame(s) is over"),
        (gif([(1000, 1000)] * 60), "an image of 1000 x 1000 pixels (width x height) in 60 frame(s) is over"),
        (JPEG_XL_CODESTREAM, "not an image of a format whose size can be checked before decoding"),
    ):
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
            serve(encoded_images=tf.constant([data]))
    animation = serve(encoded_images=tf.constant([gif([(60, 40)] * 3)]))  # within the limit: served
    assert animation["detection_boxes"].shape[0] == 1


def test_a_decompression_bomb_is_refused_without_memory(exported, tmp_path):
    """A 20000 x 20000 PNG of a few hundred kilobytes (1.2 GB decoded): refused, and the serving process's peak
    memory stays where a normal request left it."""
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bomb(20000, 20000))
    script = tmp_path / "serve.py"
    script.write_text(f"""
import resource, sys, tensorflow as tf
serve = tf.saved_model.load({exported['dir']!r}).signatures["image_bytes"]
normal = open({exported['paths']['large']!r}, "rb").read()
serve(encoded_images=tf.constant([normal]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    serve(encoded_images=tf.constant([open({str(bomb)!r}, "rb").read()]))
    print("served")
except tf.errors.InvalidArgumentError as error:
    print("refused", "20000 x 20000 pixels" in str(error))
print(before, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
""")
    process = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert process.returncode == 0, process.stderr[-3000:]
    outcome, memory = process.stdout.strip().splitlines()[-2:]
    assert outcome == "refused True"
    before, after = (int(kilobytes) for kilobytes in memory.split())
    assert after - before < 50 * 1024, (before, after)  # KiB: a decoded bomb would add 1.2 GB


def test_an_empty_batch_gives_empty_outputs_on_both_signatures(exported, loaded):
    detections = exported["model"].decoder.max_detections
    for name, argument, empty in (("serving_default", "images", tf.zeros([0, 64, 64, 3], tf.uint8)),
                                  ("image_bytes", "encoded_images", tf.zeros([0], tf.string))):
        outputs = loaded.signatures[name](**{argument: empty})
        assert outputs["detection_boxes"].shape == (0, detections, 4), name
        assert outputs["num_detections"].shape == (0,), name


def test_inputs_of_the_wrong_type_or_shape_are_refused_saying_what_is_expected(loaded):
    serve = loaded.signatures["serving_default"]
    with pytest.raises(Exception, match="uint8"):
        serve(images=tf.zeros([1, 64, 64, 3], tf.float32))
    with pytest.raises(Exception, match=r"\(None, None, None, 3\)|\[\?,\?,\?,3\]|shape"):
        serve(images=tf.zeros([1, 64, 64, 4], tf.uint8))
