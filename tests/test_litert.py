"""The LiteRT export: float32 gives the SavedModel's detections in a process without keras_retinanet, float16 and
int8 models hold what they claim, bin/evaluate scores them, and bad inputs get errors that name the problem."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_retinanet.export import export_litert, export_saved_model
from keras_retinanet.export.litert import LiteRTExportError, convert_to_litert, join_models
from keras_retinanet.export.litert_runner import LiteRTDetector, LiteRTModelError, description_path, fit_to_input
from keras_retinanet.layers import DetectionDecoder

from tiny import TINY_MODEL_YAML, copy_of_trained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "keras_retinanet", "export", "litert_runner.py")
MIN_SIZE = 96  # the training size: the default input is 96 x 96
MAX_DETECTIONS = 40

# The shared tiny model's experiment (tiny.TRAINED_TINY_CONFIG) with the validation split of these tests.
TINY_CONFIG = TINY_MODEL_YAML + f"""  decoder:
    {{score_threshold: 0.3, pre_nms_top_k: 100, max_detections: {MAX_DETECTIONS}}}
data:
  train: {{annotations: DATA/annotations/instances_train.json, images: DATA/train}}
  val: {{annotations: DATA/annotations/instances_val.json, images: DATA/val}}
  min_size: {MIN_SIZE}
  max_size: 160
  max_boxes: 8
train: {{batch_size: 4, iterations: 2, warmup_iterations: 1, lr_steps: [2], checkpoint_every: 2, eval_every: 2}}
"""

# Runs with `python -I -S`: no site-packages .pth files (so no editable install of keras_retinanet), no PYTHONPATH;
# only the folder holding the LiteRT interpreter and NumPy is put back on sys.path, and keras_retinanet is blocked.
FRESH_PROCESS_SCRIPT = """
import importlib.abc, importlib.util, sys
sys.path.append(sys.argv[1])

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "keras_retinanet":
            raise ImportError("keras_retinanet is blocked in this process")

sys.meta_path.insert(0, Blocked())
import numpy as np
spec = importlib.util.spec_from_file_location("litert_runner", sys.argv[2])
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)
images = np.load(sys.argv[3])
outputs = {}
for model_path in sys.argv[5:]:
    detector = runner.open_detector(model_path, num_threads=1)
    for name in [name for name in images.files if detector.dynamic or images[name].shape[:2] == detector.input_size]:
        for key, value in detector.detect(images[name]).items():
            outputs[f"{model_path}/{name}/{key}"] = value
assert not any(name.split(".")[0] in ("keras_retinanet", "keras") for name in sys.modules)
outputs["tensorflow_imported"] = np.array(any(name.split(".")[0] == "tensorflow" for name in sys.modules))
np.savez(sys.argv[4], **outputs)
"""


def fresh_process_detections(models, images, tmp_path):
    """{model/image/output: value} of each exported model in `models` (LiteRT, ONNX, OpenVINO) on the `images` its
    input takes, computed by `litert_runner` in a process where keras_retinanet cannot be imported, checked to run
    without TensorFlow."""
    np.savez(tmp_path / "images.npz", **images)
    site_packages = os.path.dirname(os.path.dirname(np.__file__))
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", FRESH_PROCESS_SCRIPT, site_packages, RUNNER, str(tmp_path / "images.npz"),
         str(tmp_path / "outputs.npz"), *models],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    outputs = np.load(tmp_path / "outputs.npz")
    assert not outputs["tensorflow_imported"], "the exported model should run without TensorFlow"
    return outputs


@pytest.fixture(scope="module")
def trained(trained_tiny, tmp_path_factory):
    """The session's tiny model (trained by `train` for two iterations, output layers then spread, with category ids
    that are not label + 1), storing this module's TINY_CONFIG, copied into a model directory of this module."""
    root = tmp_path_factory.mktemp("litert")
    model, data, model_dir = copy_of_trained(trained_tiny, root, TINY_CONFIG)
    return {"root": root, "data": data, "model": model, "model_dir": model_dir}


def run_cli(program, *args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", program), *args], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT)


@pytest.fixture(scope="module")
def exported(trained):
    """The float32 model at the default input size, at 96 x 160 and 160 x 96 (padded to 128 x 256 and 256 x 128
    inside), the float16 model, the int8 model (bin/export, calibrated on the model's training split by default),
    and the SavedModel."""
    root = trained["root"]
    paths = {name: str(root / f"{name}.tflite") for name in ("float32", "float32_wide", "float32_tall", "float16",
                                                             "int8")}
    export_litert(trained["model"], paths["float32"])
    export_litert(trained["model"], paths["float32_wide"], input_size=(96, 160))
    export_litert(trained["model"], paths["float32_tall"], input_size=(160, 96))
    export_litert(trained["model"], paths["float16"], quantization="float16")
    result = run_cli("export", f"--model_dir={trained['model_dir']}", "--format=tflite", f"--output={paths['int8']}",
                     "--quantization=int8", "--num_calibration_images=6")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "wrote the int8 LiteRT model" in result.stdout and "uint8 [1, 96, 96, 3]" in result.stdout
    saved_model = str(root / "saved_model")
    export_saved_model(trained["model"], saved_model)
    return {"paths": paths, "saved_model": saved_model}


@pytest.fixture(scope="module")
def test_images(trained):
    """Validation pictures at the two input sizes (96 x 160: resized from 96 x 96)."""
    images = {}
    for index, source in enumerate(sorted((trained["data"] / "val").iterdir())[:3]):
        picture = Image.open(source).convert("RGB")
        images[f"square_{index}"] = np.asarray(picture)
        images[f"wide_{index}"] = np.asarray(picture.resize((160, 96), Image.BILINEAR))
    return images


def matched(reference, candidate, score_tolerance=1e-4, box_tolerance=1e-3):
    """Detections of `reference` (the SavedModel's, one image) without a partner in `candidate` (LiteRT's, cut to
    its count) of the same class, score within `score_tolerance` and box within `box_tolerance` (normalised), left
    out those whose score is within `score_tolerance` of the last kept (a near tie at the cut)."""
    count = int(reference["num_detections"])
    free = list(range(len(candidate["detection_scores"])))
    missing = []
    for i in range(count):
        partners = [
            j for j in free
            if candidate["detection_classes"][j] == reference["detection_classes"][i]
            and abs(candidate["detection_scores"][j] - reference["detection_scores"][i]) <= score_tolerance
            and np.abs(candidate["detection_boxes"][j] - reference["detection_boxes"][i]).max() <= box_tolerance
        ]
        if partners:
            free.remove(partners[0])
        elif reference["detection_scores"][i] - reference["detection_scores"][count - 1] > score_tolerance:
            missing.append(i)
    return missing, len(free)


def test_float32_gives_the_saved_models_detections_in_a_process_without_keras_retinanet(exported, test_images,
                                                                                        tmp_path):
    models = [exported["paths"]["float32"], exported["paths"]["float32_wide"]]
    outputs = fresh_process_detections(models, test_images, tmp_path)
    serve = tf.saved_model.load(exported["saved_model"]).signatures["serving_default"]
    compared = 0
    for model_path, prefix in zip(models, ("square", "wide")):
        for name in [name for name in test_images if name.startswith(prefix)]:
            reference = {key: value.numpy()[0] for key, value in serve(images=test_images[name][None]).items()}
            candidate = {key: outputs[f"{model_path}/{name}/{key}"]
                         for key in ("detection_boxes", "detection_scores", "detection_classes")}
            assert len(candidate["detection_scores"]) == int(reference["num_detections"]) > 5
            missing, extra = matched(reference, candidate)
            assert not missing and not extra, (model_path, name, missing, extra)
            compared += len(candidate["detection_scores"])
    assert compared > 50


def test_float16_and_int8_models_hold_what_they_claim(exported, test_images):
    """float16: weights stored in float16, about half the float32 file; int8: every convolution in int8, decoding
    and NMS in float32; both find most of float32's detections."""
    sizes = {name: os.path.getsize(path) for name, path in exported["paths"].items()}
    assert 0.4 < sizes["float16"] / sizes["float32"] < 0.6
    assert sizes["int8"] / sizes["float32"] < 0.5
    detectors = {name: LiteRTDetector(exported["paths"][name]) for name in ("float32", "float16", "int8")}
    tensors = detectors["float16"].interpreter.get_tensor_details()
    assert sum(t["dtype"] == np.float16 for t in tensors) >= 10
    int8 = detectors["int8"].interpreter
    details = int8.get_tensor_details()
    operators = {}
    for operator in int8._get_ops_details():
        inputs = [details[i]["dtype"] for i in operator["inputs"] if i >= 0]
        operators.setdefault(operator["op_name"], set()).add(np.dtype(inputs[0]).name)
    assert operators["CONV_2D"] == {"int8"}
    for name in ("LOGISTIC", "TOPK_V2", "EXP", "NON_MAX_SUPPRESSION_V5"):
        assert operators[name] == {"float32"}, (name, operators[name])
    for name in ("float16", "int8"):
        found = total = 0
        for image_name in [image_name for image_name in test_images if image_name.startswith("square")]:
            reference = detectors["float32"].detect(test_images[image_name])
            candidate = detectors[name].detect(test_images[image_name])
            top = {**{key: value[:10] for key, value in reference.items()}, "num_detections": 10}
            missing, _ = matched(top, candidate, score_tolerance=0.05, box_tolerance=0.05)
            found += 10 - len(missing)
            total += 10
        assert found / total >= 0.8, (name, found, total)


def test_evaluate_scores_a_litert_model_as_the_keras_model(trained, exported, tmp_path):
    """On images of the input size, bin/evaluate finds the float32 LiteRT model's detections to be the Keras
    model's (the random output layers score zero AP, so the detections themselves are compared)."""
    detections = {}
    for name, model in (("keras", str(trained["model_dir"] / "model.keras")),
                        ("litert", exported["paths"]["float32"])):
        result = run_cli("evaluate", f"--model={model}", f"--output_dir={tmp_path / name}", "--noanalysis")
        assert result.returncode == 0, result.stderr[-4000:]
        assert "Average Precision" in result.stdout
        detections[name] = json.loads((tmp_path / name / "detections.json").read_text())
    assert len(detections["keras"]) > 100 and abs(len(detections["litert"]) - len(detections["keras"])) <= 2
    unmatched = list(detections["litert"])
    for expected in detections["keras"]:
        for candidate in unmatched:
            if (candidate["image_id"], candidate["category_id"]) == (expected["image_id"], expected["category_id"]) \
                    and abs(candidate["score"] - expected["score"]) <= 1e-4 \
                    and np.abs(np.subtract(candidate["bbox"], expected["bbox"])).max() <= 0.1:
                unmatched.remove(candidate)
                break
    assert len(unmatched) <= 2, unmatched[:5]  # near ties at the cut of max_detections may differ


def test_images_of_another_size_are_fitted_and_their_boxes_mapped_back(exported, test_images):
    """detect_image fits any image into the input (aspect ratio kept, padded) and returns boxes in its pixels: a
    picture twice the input size gives, at half the scale, the detections of the picture itself."""
    detector = LiteRTDetector(exported["paths"]["float32"])
    picture = test_images["square_0"]
    doubled = np.repeat(np.repeat(picture, 2, axis=0), 2, axis=1)
    fitted, size = fit_to_input(doubled, detector.input_size, detector.info["padding_pixel"])
    assert size == (96, 96) and fitted.shape == (96, 96, 3)
    np.testing.assert_allclose(fitted.astype(int), picture.astype(int), atol=1)  # the 2x2 blocks average back
    direct = detector.detect_image(picture)
    large = detector.detect_image(doubled)
    assert len(large["scores"]) > 5
    count = min(5, len(direct["scores"]))
    np.testing.assert_allclose(large["boxes"][:count] / 2, direct["boxes"][:count], atol=1.5)
    tall, size = fit_to_input(np.zeros((50, 20, 3), np.uint8) + 200, (96, 96), (10.0, 20.0, 30.0))
    assert size == (96, 38) and (tall[:, :38] == 200).all() and (tall[:, 38:] == [10, 20, 30]).all()


def test_the_interpreter_input_is_checked_with_errors_naming_the_problem(exported):
    detector = LiteRTDetector(exported["paths"]["float32_wide"])
    with pytest.raises(ValueError, match=r"takes images of 96 x 160 pixels .* got shape \[96, 96, 3\]"):
        detector.detect(np.zeros((96, 96, 3), np.uint8))
    with pytest.raises(ValueError, match=r"takes uint8 images \(RGB, 0-255\), got float32"):
        detector.detect(np.zeros((96, 160, 3), np.float32))
    with pytest.raises(ValueError, match=r"got shape \[96, 160, 4\]"):
        detector.detect(np.zeros((96, 160, 4), np.uint8))
    with pytest.raises(ValueError, match=r"image_size must be \(height, width\) within the input's 96 x 160, got "
                                         r"\(97, 10\)"):
        detector.detect(np.zeros((96, 160, 3), np.uint8), (97, 10))


def test_missing_or_broken_models_are_refused_naming_the_file(exported, tmp_path):
    with pytest.raises(LiteRTModelError, match="no LiteRT model at .*absent.tflite"):
        LiteRTDetector(str(tmp_path / "absent.tflite"))
    copy = tmp_path / "copy.tflite"
    shutil.copy(exported["paths"]["float32"], copy)
    with pytest.raises(LiteRTModelError, match=r"copy.tflite: its description .*copy.json.* cannot be read"):
        LiteRTDetector(str(copy))
    shutil.copy(description_path(exported["paths"]["float32"]), tmp_path / "copy.json")
    copy.write_bytes(b"not a flatbuffer" * 10)
    with pytest.raises(LiteRTModelError, match=r"copy.tflite: not a LiteRT detector the runtime can load"):
        LiteRTDetector(str(copy))
    result = run_cli("evaluate", f"--model={copy}", f"--output_dir={tmp_path / 'eval'}")
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "copy.tflite: not a LiteRT detector" in result.stderr and "Traceback" not in result.stderr


def test_unreadable_representative_data_is_one_line_naming_the_file(trained, tmp_path):
    broken = tmp_path / "calibration.csv"
    broken.write_text("image.jpg,10,10,oops,20,cat\n")
    for args, named in (([f"--representative_data={tmp_path / 'absent.json'}"], "absent.json"),
                        ([f"--representative_data={broken}", "--representative_format=csv",
                          f"--representative_images={tmp_path}"], "calibration.csv")):
        result = run_cli("export", f"--model_dir={trained['model_dir']}", "--format=tflite", "--quantization=int8",
                         f"--output={tmp_path / 'int8.tflite'}", *args)
        assert result.returncode == 1, result.stderr[-2000:]
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and named in last and "Traceback" not in result.stderr
        assert not (tmp_path / "int8.tflite").exists()
    result = run_cli("export", f"--model_dir={trained['model_dir']}", "--format=tflite", "--input_size=96",
                     f"--output={tmp_path / 'x.tflite'}")
    assert result.returncode != 0 and "--input_size must be HEIGHTxWIDTH" in result.stderr


def test_an_op_litert_cannot_run_is_named(trained):
    """The detectron resize (ScaleAndTranslate) has no LiteRT kernel: a graph holding it is refused by name."""
    model = trained["model"]

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32, name="images")])
    def resize_then_detect(images):
        resized = tf.raw_ops.ScaleAndTranslate(images=images, size=[64, 64], scale=[2.0, 2.0],
                                               translation=[0.0, 0.0], kernel_type="triangle", antialias=False)
        return model(resized, training=False)

    with pytest.raises(LiteRTExportError, match="LiteRT's built-in ops cannot run: ScaleAndTranslate"):
        convert_to_litert(model, resize_then_detect)


def test_join_models_refuses_models_it_cannot_join(exported):
    with open(exported["paths"]["float32"], "rb") as stream:
        flatbuffer = stream.read()
    with pytest.raises(LiteRTExportError, match=r"inputs \['image_size', 'images'\] of the second are not outputs of "
                                                 r"the first .* share the names of its inputs"):
        join_models(flatbuffer, flatbuffer)


def test_per_image_nms_gives_the_batched_nms_detections_in_tensorflow_and_litert():
    """The decoder's per-image NMS (what LiteRT runs) equals its batched NMS; boxes squeezed to zero width at the
    image's edge (which LiteRT's kernel would select again and again) never reach it."""
    rng = np.random.default_rng(0)
    counts, num_classes = (300, 80), 3
    logits = rng.normal(-1.0, 1.5, (1, sum(counts), num_classes)).astype(np.float32)
    corners = rng.uniform(0, 100, (1, sum(counts), 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(2, 30, corners.shape)], axis=-1).astype(np.float32)
    boxes[0, ::7, 0] = boxes[0, ::7, 2] = 120.0  # beyond the image's right edge: zero width once clipped
    boxes[0, 1::11] = boxes[0, 2::11]  # exact duplicates
    batched = DetectionDecoder(score_threshold=0.2, pre_nms_top_k=150, max_detections=60)
    per_image = DetectionDecoder(score_threshold=0.2, pre_nms_top_k=150, max_detections=60, per_image_nms=True)
    expected = batched(logits, boxes, level_anchor_counts=counts, image_size=(100, 110))
    expected = {key: value.numpy() for key, value in expected.items()}
    assert expected["num_detections"][0] == 60 and (expected["boxes"][0, :, 2] - expected["boxes"][0, :, 0] > 0).all()

    @tf.function(input_signature=[tf.TensorSpec(logits.shape, tf.float32, name="logits"),
                                  tf.TensorSpec(boxes.shape, tf.float32, name="boxes")])
    def decode(class_logits, candidate_boxes):
        return per_image(class_logits, candidate_boxes, level_anchor_counts=counts, image_size=(100, 110))

    module = tf.Module()
    module.decode = decode
    litert = tf.lite.Interpreter(model_content=convert_to_litert(module, decode)).get_signature_runner()
    for outputs in ({key: value.numpy() for key, value in decode(logits, boxes).items()},
                    litert(logits=logits, boxes=boxes)):
        assert outputs["num_detections"][0] == expected["num_detections"][0]
        np.testing.assert_array_equal(outputs["classes"], expected["classes"])
        np.testing.assert_allclose(outputs["scores"], expected["scores"], atol=1e-6)
        np.testing.assert_allclose(outputs["boxes"], expected["boxes"], atol=1e-4)


def test_the_benchmark_times_exported_files(exported):
    from keras_retinanet.benchmark.ours import exported_files

    files = [exported["paths"]["int8"], exported["paths"]["float32_wide"]]
    stray = exported["paths"]["int8"][: -len(".tflite")] + ".bin"  # where an OpenVINO model's weights would be
    with open(stray, "wb") as file:
        file.write(bytes(1000))
    try:
        timed = exported_files([exported["saved_model"], *files], threads=1, repeats=2, saved_model_size=96)
    finally:
        os.remove(stray)
    for path in files:
        assert 0 < timed[path]["seconds"] < 5
        assert timed[path]["megabytes"] == os.path.getsize(path) / 1e6
    assert timed[exported["paths"]["float32_wide"]]["input_size"] == [96, 160]
    saved_model = timed[exported["saved_model"]]
    assert saved_model["input_size"] == [96, 96] and 0 < saved_model["seconds"] < 5
    assert saved_model["megabytes"] > timed[exported["paths"]["int8"]]["megabytes"]


def test_int8_of_a_model_without_training_config_asks_for_calibration_images(tmp_path):
    from tiny import tiny_retinanet

    model = tiny_retinanet(num_classes=2)
    model.metadata = {"category_ids": [1, 2], "class_names": ["cat", "dog"]}
    model(np.zeros((1, 64, 64, 3), np.float32))
    model.save(str(tmp_path / "converted.keras"))
    result = run_cli("export", f"--model={tmp_path / 'converted.keras'}", "--format=tflite", "--quantization=int8",
                     f"--output={tmp_path / 'int8.tflite'}")
    assert result.returncode != 0 and "give the calibration images with --representative_data" in result.stderr
    assert not (tmp_path / "int8.tflite").exists()


def test_the_runner_command_line_reads_a_turned_camera_jpeg_as_the_pipeline_does(exported, test_images, tmp_path):
    """`python litert_runner.py MODEL photo.jpg`, run from a copy beside the model, on a JPEG of an odd size whose
    EXIF orientation turns it a quarter: its detections are those of `detect_image` on the upright pixels that the
    training pipeline decodes (`load_images`)."""
    from keras_retinanet.data.pipeline import load_images

    picture = Image.fromarray(test_images["square_1"]).resize((131, 77), Image.BILINEAR)
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: shown 90 degrees clockwise
    picture.rotate(90, expand=True).save(tmp_path / "photo.jpg", quality=92, exif=exif.tobytes())
    for name in ("float32.tflite", "float32.json"):
        shutil.copy(os.path.join(os.path.dirname(exported["paths"]["float32"]), name), tmp_path / name)
    shutil.copy(RUNNER, tmp_path / "litert_runner.py")
    result = subprocess.run([sys.executable, "litert_runner.py", "float32.tflite", "photo.jpg"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    printed = json.loads(result.stdout)["detections"]
    upright = next(load_images([str(tmp_path / "photo.jpg")]))
    assert upright.shape == (77, 131, 3)
    expected = LiteRTDetector(exported["paths"]["float32"]).detect_image(upright)
    assert len(printed) == len(expected["scores"]) > 5
    np.testing.assert_allclose([d["box"] for d in printed], expected["boxes"], atol=0.01)
    np.testing.assert_allclose([d["score"] for d in printed], expected["scores"], atol=1e-5)
    assert [d["category_id"] for d in printed] == expected["category_ids"].tolist()
    assert {d["name"] for d in printed} <= {"circle", "square", "triangle", "cross"}
    result = subprocess.run([sys.executable, "litert_runner.py", "float32.tflite", "absent.jpg"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "absent.jpg" in result.stderr and "Traceback" not in result.stderr


def pixel_boxes_matched(reference, candidate, score_tolerance=1e-4, box_tolerance=0.05):
    """Detections (`boxes` xyxy in pixels, `scores`, `category_ids`) of `reference` without a partner in
    `candidate` of the same class, score and box within the tolerances, and the count of unpartnered candidates;
    near ties at the cut of max_detections (score within `score_tolerance` of the last) are let go."""
    free = list(range(len(candidate["scores"])))
    missing = []
    for i in range(len(reference["scores"])):
        partners = [j for j in free if candidate["category_ids"][j] == reference["category_ids"][i]
                    and abs(candidate["scores"][j] - reference["scores"][i]) <= score_tolerance
                    and np.abs(candidate["boxes"][j] - reference["boxes"][i]).max() <= box_tolerance]
        if partners:
            free.remove(partners[0])
        elif reference["scores"][i] - reference["scores"][-1] > score_tolerance:
            missing.append(i)
    return missing, len(free)


@pytest.fixture(scope="module")
def edge_photos(trained):
    """PNG photos of aspect 1:18 (9 x 160), 1:4 (160 x 40), 4:1 (40 x 160) and 1:1 (96 x 96) made of validation
    pictures: sizes that the training resize keeps (the longer side at max_size 160, or the shorter at min_size 96),
    so that every route sees the same pixels, padded far beyond the image (to 128 x 256 or 256 x 128)."""
    sources = sorted((trained["data"] / "val").iterdir())
    folder = trained["root"] / "edge_photos"
    folder.mkdir()
    paths = []
    for index, (height, width) in enumerate(((9, 160), (160, 40), (40, 160), (96, 96))):
        picture = Image.open(sources[index]).convert("RGB").resize((width, height), Image.BILINEAR)
        paths.append(str(folder / f"photo_{height}x{width}.png"))
        picture.save(paths[-1])
    return paths


def test_every_route_gives_the_same_detections_inside_the_image_whatever_its_aspect(trained, exported,
                                                                                   edge_photos):
    """bin/predict's path (one image a batch, and all four asked for in one batch), the SavedModel's image_bytes and
    the LiteRT model (its input square, wide or tall like the photo) give the same detections, all inside the
    image: none of zero area squeezed at its edge, none in the padding."""
    from keras_retinanet.inference import detect, model_data_config

    model = trained["model"]
    data_config = model_data_config(model)
    category_ids = np.array(model.metadata["category_ids"])
    serve = tf.saved_model.load(exported["saved_model"]).signatures["image_bytes"]
    alone = detect(model, edge_photos, data_config, batch_size=1)
    together = detect(model, edge_photos, data_config, batch_size=4)
    compared = 0
    for index, path in enumerate(edge_photos):
        height, width = Image.open(path).size[::-1]
        limits = np.float32([width, height, width, height])
        routes = {}
        for name, batch in (("alone", alone), ("together", together)):
            count = int(batch["num_detections"][index])
            routes[name] = {"boxes": batch["boxes"][index, :count], "scores": batch["scores"][index, :count],
                            "category_ids": category_ids[batch["classes"][index, :count]]}
        with open(path, "rb") as stream:
            served = {key: value.numpy()[0] for key, value in serve(encoded_images=[stream.read()]).items()}
        count = int(served["num_detections"])
        routes["saved_model"] = {"boxes": served["detection_boxes"][:count, [1, 0, 3, 2]] * limits,
                                 "scores": served["detection_scores"][:count],
                                 "category_ids": served["detection_classes"][:count].astype(np.int64)}
        # The LiteRT model whose input pads to the canvas the pipeline pads the photo to: more padding would change
        # what the convolutions see near the image.
        shape = "float32" if height == width else "float32_tall" if height > width else "float32_wide"
        routes["litert"] = LiteRTDetector(exported["paths"][shape]).detect_file(path)
        for name, detections in routes.items():
            boxes = detections["boxes"]
            assert len(boxes) > 0, (path, name)
            assert (boxes[:, 2:] - boxes[:, :2] > 0.005).all(), (path, name, boxes[:5])  # none squeezed flat
            assert (boxes >= 0).all() and (boxes <= limits + 1e-3).all(), (path, name)
        for name in ("together", "saved_model", "litert"):
            missing, extra = pixel_boxes_matched(routes["alone"], routes[name])
            assert not missing and not extra, (path, name, missing, extra)
        compared += len(routes["alone"]["scores"])
    assert compared > 40


def test_the_runner_reads_image_files_as_the_pipeline_decodes_them(tmp_path):
    """16-bit grayscale, palette with transparency, CMYK, grayscale with alpha and EXIF-turned files: the runner's
    Pillow reading gives the pixels TensorFlow's decoders give the training pipeline (PIL's own conversion would
    saturate the 16-bit file: 99% of its pixels at 255)."""
    from keras_retinanet.data.pipeline import load_images
    from keras_retinanet.export.litert_runner import read_image

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    files = {
        "gray16.png": Image.fromarray(rng.integers(0, 65536, (37, 53), dtype=np.uint16)),
        "palette.png": Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16),
        "cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "gray_alpha.png": Image.fromarray(rgb[..., :2], "LA"),
        "turned.jpg": Image.fromarray(rgb),
    }
    for name, picture in files.items():
        options = {"transparency": 3} if name == "palette.png" else {}
        if name == "turned.jpg":
            exif = Image.Exif()
            exif[0x0112] = 8  # shown turned 90 degrees counter-clockwise
            options = {"exif": exif.tobytes(), "quality": 95}
        picture.save(tmp_path / name, **options)
    for name in files:
        path = str(tmp_path / name)
        expected = next(load_images([path]))
        np.testing.assert_array_equal(read_image(path, max_pixels=1e9), expected, err_msg=name)
    assert read_image(str(tmp_path / "turned.jpg"), 1e9).shape == (53, 37, 3)
    from keras_retinanet.data.images import DECODABLE_FORMATS
    from keras_retinanet.export.litert_runner import IMAGE_FORMATS

    assert IMAGE_FORMATS == DECODABLE_FORMATS  # the runner imports nothing of ours: its copy must not drift
    Image.fromarray(rgb).save(tmp_path / "scan.tiff")  # Pillow reads it, TensorFlow's decoders do not
    with pytest.raises(ValueError, match="scan.tiff: TIFF images are not read by the training pipeline"):
        read_image(str(tmp_path / "scan.tiff"), 1e9)
    with Image.open(tmp_path / "gray16.png") as picture:
        assert (np.asarray(picture.convert("RGB")) == 255).mean() > 0.9  # what the runner read before


def test_the_runner_command_line_refuses_bad_files_in_one_line(exported, tmp_path):
    """A FIFO given as an image (no hang), an image over the model's pixel limit (from its header, before
    decoding), and descriptions that are a list, lack an entry or hold a string for a number."""
    model = tmp_path / "model.tflite"
    shutil.copy(exported["paths"]["float32"], model)
    description = json.loads(open(description_path(exported["paths"]["float32"])).read())
    description["data"]["max_image_pixels"] = 1000
    (tmp_path / "model.json").write_text(json.dumps(description))
    Image.new("RGB", (50, 40)).save(tmp_path / "large.png")
    os.mkfifo(tmp_path / "fifo.png")
    broken = {"list": [], "no_padding": {k: v for k, v in description.items() if k != "padding_pixel"},
              "string_number": {**description, "padding_pixel": ["0", 0, 0]},
              "no_data": {k: v for k, v in description.items() if k != "data"}}
    for name, content in broken.items():
        shutil.copy(model, tmp_path / f"{name}.tflite")
        (tmp_path / f"{name}.json").write_text(json.dumps(content))
    cases = {
        ("model.tflite", "fifo.png"): "fifo.png is not a regular file",
        ("model.tflite", "large.png"): "large.png: 50 x 40 pixels, more than the model's limit of 1000",
        ("list.tflite", "large.png"): "list.json, written beside it by the export, holds a JSON list",
        ("no_padding.tflite", "large.png"): "needs 'padding_pixel': three numbers in 0-255",
        ("string_number.tflite", "large.png"): "needs 'padding_pixel': three numbers in 0-255",
        ("no_data.tflite", "large.png"): "needs 'data': an object",
    }
    for (model_name, image), message in cases.items():
        result = subprocess.run([sys.executable, RUNNER, model_name, image], capture_output=True, text=True,
                                timeout=60, cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, (model_name, image, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (model_name, lines)
