"""The ONNX and OpenVINO exports: in a fresh process with only NumPy and the runtime (onnxruntime, openvino), each
gives the SavedModel's detections on 30 images of six sizes, at a fixed and a dynamic input size; OpenVINO's int8
(NNCF) finds most of them; bad settings get errors that name them. Run by `make test-onnx` / `make test-openvino`,
which install the extras; skipped where they are absent."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_retinanet.export import export_saved_model
from keras_retinanet.export.litert_runner import open_detector

from test_litert import TINY_CONFIG, fresh_process_detections, matched, run_cli
from tiny import copy_of_trained

# Sizes the SavedModel keeps as they are (shorter side 96, longer at most 160: the training resize), odd ones too,
# so that it and an exported model of dynamic size see the same pixels.
SIZES = ((96, 96), (96, 128), (128, 96), (96, 157), (141, 96), (96, 111))


@pytest.fixture(scope="module")
def trained(trained_tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_openvino")
    model, data, model_dir = copy_of_trained(trained_tiny, root, TINY_CONFIG)
    saved_model = str(root / "saved_model")
    export_saved_model(model, saved_model)
    return {"root": root, "data": data, "model": model, "model_dir": model_dir, "saved_model": saved_model}


@pytest.fixture(scope="module")
def images(trained):
    """The six validation pictures at each of `SIZES`: 36 images."""
    pictures = [Image.open(path).convert("RGB") for path in sorted((trained["data"] / "val").iterdir())]
    return {f"{index}_{height}x{width}": np.asarray(picture.resize((width, height), Image.BILINEAR))
            for index, picture in enumerate(pictures) for height, width in SIZES}


def _assert_saved_model_detections(trained, images, outputs, model_path):
    """Every image the model took in the fresh process has the SavedModel's detections (`matched`)."""
    serve = tf.saved_model.load(trained["saved_model"]).signatures["serving_default"]
    compared = []
    for name, image in images.items():
        if f"{model_path}/{name}/detection_scores" not in outputs:
            continue
        reference = {key: value.numpy()[0] for key, value in serve(images=image[None]).items()}
        candidate = {key: outputs[f"{model_path}/{name}/{key}"]
                     for key in ("detection_boxes", "detection_scores", "detection_classes")}
        assert len(candidate["detection_scores"]) == int(reference["num_detections"]) > 3, name
        missing, extra = matched(reference, candidate)
        assert not missing and not extra, (model_path, name, missing, extra)
        compared.append(name)
    return compared


@pytest.mark.onnx
def test_onnx_gives_the_saved_models_detections_with_only_onnxruntime(trained, images, tmp_path):
    pytest.importorskip("tf2onnx", reason="the ONNX export needs tf2onnx: make test-onnx installs it")
    pytest.importorskip("onnxruntime", reason="ONNX models run on onnxruntime: make test-onnx installs it")
    from keras_retinanet.export.onnx import export_onnx

    fixed, dynamic = str(trained["root"] / "fixed.onnx"), str(trained["root"] / "dynamic.onnx")
    export_onnx(trained["model"], fixed)
    info = export_onnx(trained["model"], dynamic, dynamic_size=True)
    assert info["dynamic_size"] and info["input_size"] == [96, 96] and info["format"] == "keras_retinanet ONNX detector"
    import onnx

    assert "NonMaxSuppression" in {node.op_type for node in onnx.load(fixed).graph.node}
    outputs = fresh_process_detections([fixed, dynamic], images, tmp_path)
    assert len(_assert_saved_model_detections(trained, images, outputs, fixed)) == 6  # the 96 x 96 ones
    assert len(_assert_saved_model_detections(trained, images, outputs, dynamic)) == len(images) == 36


@pytest.mark.openvino
def test_openvino_gives_the_saved_models_detections_and_int8_most_of_them(trained, images, tmp_path):
    pytest.importorskip("openvino", reason="the OpenVINO export needs openvino: make test-openvino installs it")
    fixed, dynamic = str(trained["root"] / "fixed.xml"), str(trained["root"] / "dynamic.xml")
    from keras_retinanet.export.openvino import export_openvino

    export_openvino(trained["model"], fixed)
    export_openvino(trained["model"], dynamic, dynamic_size=True)
    assert os.path.exists(fixed[:-4] + ".bin") and os.path.exists(fixed[:-4] + ".json")
    outputs = fresh_process_detections([fixed, dynamic], images, tmp_path)
    assert len(_assert_saved_model_detections(trained, images, outputs, fixed)) == 6
    assert len(_assert_saved_model_detections(trained, images, outputs, dynamic)) == 36

    pytest.importorskip("nncf", reason="int8 needs NNCF: make test-openvino installs it")
    int8 = str(trained["root"] / "int8.xml")
    result = run_cli("export", f"--model_dir={trained['model_dir']}", "--format=openvino", f"--output={int8}",
                     "--quantization=int8", "--num_calibration_images=6")
    assert result.returncode == 0, result.stderr[-4000:]
    quantised, reference = open_detector(int8), open_detector(fixed)
    found = total = 0
    for name in [name for name in images if name.endswith("_96x96")]:
        expected, got = reference.detect(images[name]), quantised.detect(images[name])
        missing, _ = matched({**expected, "num_detections": len(expected["detection_scores"])}, got,
                             score_tolerance=0.1, box_tolerance=0.05)
        total += len(expected["detection_scores"])
        found += len(expected["detection_scores"]) - len(missing)
    assert found >= 0.5 * total > 0


@pytest.mark.parametrize("module, arguments, message", [
    ("onnx", {"output_path": "model.tflite"}, "must end in .onnx"),
    ("openvino", {"output_path": "model.onnx"}, "must end in .xml"),
    ("openvino", {"output_path": "model.xml", "quantization": "int4"}, "quantization must be one of"),
    ("openvino", {"output_path": "model.xml", "quantization": "int8"}, "needs a representative dataset"),
])
def test_export_settings_that_cannot_work_are_named(trained, module, arguments, message):
    """Checked before anything converts; where the runtime's package is absent, that is the error named."""
    exporter = {"onnx": "keras_retinanet.export.onnx", "openvino": "keras_retinanet.export.openvino"}[module]
    import importlib

    export = getattr(importlib.import_module(exporter), f"export_{module}")
    with pytest.raises(ValueError, match=f"{message}|pip install 'keras-retinanet\\[{module}\\]'"):
        export(trained["model"], **arguments)


@pytest.mark.openvino
def test_the_benchmark_times_every_runtime_without_tensorflow_in_the_timed_process(tmp_path):
    """`bin/benchmark --paths=runtimes`: each runtime whose package is here has a latency and a file size (int8
    files smaller than float32), timed in a process without TensorFlow or Keras; an absent one is a row naming the
    extra to install."""
    import importlib.util
    import json

    from keras_retinanet.benchmark.ours import RUNTIME_EXPORTS
    from tiny import tiny_experiment_file

    config = tiny_experiment_file(tmp_path)
    report = tmp_path / "report.json"
    result = run_cli("benchmark", "--paths=runtimes", f"--runtimes_config={config}", "--image_size=96",
                     "--num_classes=2", "--repeats=2", "--litert_threads=1", "--peers=", "--dtypes=float32",
                     f"--json={report}")
    assert result.returncode == 0, result.stderr[-4000:]
    rows = {row["path"].split(",")[0]: row for row in json.loads(report.read_text())["rows"]}
    assert set(rows) == {"TensorFlow SavedModel float32", *(name for name, *_ in RUNTIME_EXPORTS.values())}
    packages = {"LiteRT": "ai_edge_litert", "ONNX Runtime": "onnxruntime", "OpenVINO": "openvino"}
    sizes = {}
    for name, row in rows.items():
        package = next((package for runtime, package in packages.items() if name.startswith(runtime)), None)
        if package and importlib.util.find_spec(package) is None:
            assert "pip install" in row["ours"]["error"], (name, row)
            continue
        assert isinstance(row["ours"], float) and 0 < row["ours"] < 5, (name, row)
        assert "loaded in its process" not in row["note"], (name, row)
        sizes[name] = float(row["note"].split(" MB")[0])
    assert "x TensorFlow" in rows["LiteRT float32"]["note"]
    for runtime in ("LiteRT", "OpenVINO"):
        if f"{runtime} int8" in sizes:
            assert sizes[f"{runtime} int8"] < 0.6 * sizes[f"{runtime} float32"], sizes


@pytest.mark.openvino
def test_the_export_docs_snippets_run_each_runtime_and_give_the_saved_models_detections(trained, images, tmp_path):
    """docs/export.md's five-line snippets, one per runtime, run as written (the file names and the 192 x 192 input
    replaced by this module's model at 96 x 96) in fresh processes, each giving the SavedModel's detections."""
    import re
    import subprocess
    import sys

    for package in ("tf2onnx", "onnxruntime", "openvino"):
        pytest.importorskip(package, reason="make test-onnx and make test-openvino install it")
    from keras_retinanet.export import export_litert
    from keras_retinanet.export.onnx import export_onnx
    from keras_retinanet.export.openvino import export_openvino

    export_litert(trained["model"], str(tmp_path / "mobile_int8.tflite"))
    export_onnx(trained["model"], str(tmp_path / "mobile.onnx"))
    export_openvino(trained["model"], str(tmp_path / "mobile.xml"))
    name = next(name for name in images if name.endswith("_96x96"))
    np.save(tmp_path / "image.npy", images[name][None])
    docs = open(os.path.join(os.path.dirname(__file__), os.pardir, "docs", "export.md")).read()
    snippets = re.findall(r"```python\n(.*?)```", docs[docs.index("## Which runtime"):], re.S)
    assert len(snippets) == 4 and all(len(snippet.strip().splitlines()) <= 5 for snippet in snippets)
    serve = tf.saved_model.load(trained["saved_model"]).signatures["serving_default"]
    reference = {key: value.numpy()[0] for key, value in serve(images=images[name][None]).items()}
    for snippet in snippets:
        code = (snippet.replace("runs/serving/mobile/1", trained["saved_model"]).replace("192", "96")
                .replace("image = np.zeros((96, 96, 3), np.uint8)", "image = np.load('image.npy')[0]")
                .replace("image = np.zeros((1, 96, 96, 3), np.uint8)", "image = np.load('image.npy')"))
        code += "\nnp.savez('out.npz', **{key: np.asarray(value)[0] for key, value in out.items()})\n"
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path,
                                timeout=300)
        assert result.returncode == 0, (snippet, result.stderr[-3000:])
        out = dict(np.load(tmp_path / "out.npz"))
        assert int(out["num_detections"]) == int(reference["num_detections"]) > 3, snippet
        count = int(out["num_detections"])
        missing, extra = matched(reference, {key: out[key][:count] for key in
                                             ("detection_boxes", "detection_scores", "detection_classes")})
        assert not missing and not extra, (snippet, missing, extra)
