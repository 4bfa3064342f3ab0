"""The contract of every command line: bad input (a file, a config, a model, an environment variable) ends the
program with one line `error: ...` naming the file, key or value, exit status 1, and no traceback. Each program
runs its cases in one process (`contract_driver.py`), so TensorFlow loads once per program."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from test_image_header import gif
from tiny import TINY_MODEL_YAML

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DRIVER = os.path.join(ROOT, "tests", "contract_driver.py")


def run_cases(program, cases):
    """Each case's (exit status or message, stderr) from `program` run over the cases' argument lists."""
    result = subprocess.run(
        [sys.executable, DRIVER, program], input=json.dumps(cases), capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "2"}, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Bad files of every kind, and the good ones they sit beside."""
    from keras_retinanet.config import load_config, to_dict
    from keras_retinanet.datasets import generate_shapes_dataset
    from keras_retinanet.models.factory import build_retinanet

    root = tmp_path_factory.mktemp("contract")
    data = root / "data"
    generate_shapes_dataset(str(data), splits={"train": 4}, image_size=(64, 64), min_size=16, max_size=30,
                            max_objects=2)
    good = root / "good.yaml"
    good.write_text(TINY_MODEL_YAML + f"""data:
  train: {{annotations: {data}/annotations/instances_train.json, images: {data}/train}}
  min_size: 64
  max_size: 64
train: {{batch_size: 2, iterations: 2, lr_steps: [2], warmup_iterations: 1, checkpoint_every: 2, eval_every: 2}}
""")
    paths = {"root": root, "data": data, "good": good}

    def write(name, text):
        paths[name] = root / name
        paths[name].write_text(text)

    coco = json.loads((data / "annotations" / "instances_train.json").read_text())
    for name, change in (
        ("images_number", lambda c: c.update(images=5)),
        ("categories_null", lambda c: c.update(categories=None)),
        ("huge_coordinate", lambda c: c["annotations"][0].update(bbox=[float("1" * 400), 1, 5, 5])),
        ("duplicate_names", lambda c: c["categories"].append({**c["categories"][0], "id": 99})),
    ):
        changed = json.loads(json.dumps(coco))
        change(changed)
        write(f"{name}.json", json.dumps(changed).replace("Infinity", "1" * 400))
    write("huge_width.json", json.dumps(coco).replace('"width": 64', '"width": ' + "9" * 5000, 1))
    write("deep.json", "[" * 200_000 + "]" * 200_000)
    write("classes.csv", "ring,\u00b2\n")
    write("images.csv", "image.png,1,1,5,5,ring\n")
    for name, text in (
        ("empty_scales.yaml", "model: {anchors: {scales: []}}"),
        ("negative_ratio.yaml", "model: {anchors: {aspect_ratios: [-0.5, 1.0]}}"),
        ("sizes_length.yaml", "model: {anchors: {sizes: [16, 32, 64]}}"),
        ("width_zero.yaml", "model: {backbone: {width_multiplier: 0, weights: null}}"),
        ("iou_five.yaml", "model: {decoder: {iou_threshold: 5}}"),
        ("score_negative.yaml", "model: {decoder: {score_threshold: -1}}"),
        ("thresholds.yaml", "model: {matcher: {positive_threshold: 0.3}}"),
        ("eval_every.yaml", "train: {checkpoint_every: 3, eval_every: 10}"),
        ("num_convs.yaml", "model: {heads: {num_convs: -1}}"),
        ("jitter.yaml", "data: {scale_jitter: [2, -0.5]}"),
        ("warmup.yaml", "train: {warmup_iterations: -1}"),
        ("lr_steps.yaml", "train: {lr_steps: [-5]}"),
        ("base_passwd.yaml", "base: /etc/passwd\n"),
        ("deep.yaml", "[" * 200_000),
    ):
        write(name, text)

    # A model bin/train would write (with its stored config), and a Keras model that is no RetinaNet.
    config = load_config(str(good))
    model = build_retinanet(config.model, 4)
    model.metadata = {"class_names": ["a", "b", "c", "d"], "category_ids": [1, 2, 3, 4], "config": to_dict(config)}
    model(np.zeros((1, 64, 64, 3), np.float32))
    paths["model"] = root / "model.keras"
    model.save(str(paths["model"]))
    paths["sequential"] = root / "sequential.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]).save(str(paths["sequential"]))
    # Past the pixel limit: a 64 x 64 logical screen holding an 8000 x 8000 frame (64 MP decoded, limit 50 MP).
    paths["gif_bomb"] = root / "bomb.gif"
    paths["gif_bomb"].write_bytes(gif([(8000, 8000)], screen=(64, 64)))
    paths["fifo"] = root / "fifo.png"
    os.mkfifo(paths["fifo"])
    # A LiteRT model whose description is broken in several ways (read before the model itself).
    for name, description in (("list", []), ("no_padding", {"label_map": {"1": "a"}, "data": {}}),
                              ("string_number", {"label_map": {"1": "a"}, "padding_pixel": ["0", 0, 0], "data": {}})):
        (root / f"{name}.tflite").write_bytes(b"TFL3" + bytes(60))
        (root / f"{name}.json").write_text(json.dumps(description))
    return paths


def assert_one_line_errors(program, cases, expected):
    """Runs `cases` (argument lists, or dicts with "argv" and "env") and checks each ended with one line
    `error: ...` holding its expected text, exit status 1, and no traceback."""
    cases = [case if isinstance(case, dict) else {"argv": case} for case in cases]
    for case, result, text in zip(cases, run_cases(program, cases), expected):
        status = result["status"]
        assert isinstance(status, str) and status.startswith("error: "), (program, case, status, result["stderr"])
        assert "\n" not in status.strip() and "Traceback" not in result["stderr"], (program, case, status)
        assert text in status, (program, case, status)


def test_train_refuses_bad_configs_and_environments_in_one_line(files):
    root, model_dir = files["root"], str(files["root"] / "never_written")
    names = {
        "empty_scales.yaml": "'model.anchors.scales'",
        "negative_ratio.yaml": "'model.anchors.aspect_ratios[0]' must be in (0, inf), got -0.5",
        "sizes_length.yaml": "'model.anchors.sizes'",
        "width_zero.yaml": "'model.backbone.width_multiplier' must be in (0, 16], got 0",
        "iou_five.yaml": "'model.decoder.iou_threshold' must be in (0, 1], got 5",
        "score_negative.yaml": "'model.decoder.score_threshold' must be in [0, 1), got -1",
        "thresholds.yaml": "'model.matcher.negative_threshold' = 0.4, 'model.matcher.positive_threshold' = 0.3",
        "eval_every.yaml": "'train.eval_every' = 10",
        "num_convs.yaml": "'model.heads.num_convs' must be in [0, 32], got -1",
        "jitter.yaml": "'data.scale_jitter[1]' must be in (0, inf), got -0.5",
        "warmup.yaml": "'train.warmup_iterations' must be in [0, inf), got -1",
        "lr_steps.yaml": "'train.lr_steps[0]' must be in [1, inf), got -5",
        "base_passwd.yaml": "/etc/passwd is not a YAML mapping",
        "deep.yaml": "nested too deeply",
    }
    cases = [[f"--config={root / name}", f"--model_dir={model_dir}"] for name in names]
    expected = [f"{root / name}: " + text if name not in ("base_passwd.yaml",) else text
                for name, text in names.items()]
    tf_configs = {
        '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": 5}}': "'task.index' is 5",
        '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "painter", "index": 0}}': "painter",
        '{"cluster": {"worker": ["localhost:1"]}, "task": {"type": "worker", "index": "one"}}': "'task.index'",
    }
    for value, text in tf_configs.items():
        cases.append({"argv": [f"--config={files['good']}", f"--model_dir={model_dir}", "--strategy=multi_worker"],
                      "env": {"TF_CONFIG": value}})
        expected.append(text)
    cases.append([f"--config={files['good']}", f"--model_dir={model_dir}",
                  f"--set=data.train.annotations={root / 'absent.json'}"])
    expected.append("absent.json")
    # Fine-tuning from a source that is missing, runs a command, or contradicts a setting written in the file.
    from pth_files import Archive, Call

    from keras_retinanet.config import load_config, to_dict
    from keras_retinanet.models.factory import build_retinanet

    marker = root / "ran"
    command = Archive().write(root / "command.pth", {"weight": Call("os.system", f"touch {marker}")})
    source = load_config(str(files["good"]), ["model.heads.num_convs=2"])
    model = build_retinanet(source.model, 2)
    model.metadata = {"class_names": ["a", "b"], "category_ids": [1, 2], "config": to_dict(source)}
    model.save(str(root / "two_convs.keras"))
    absent = "no such file or model directory, and not a name bin/fetch_weights knows"
    for init_from, text in ((root / "absent", absent),
                            (command, "command.pth: its pickle names the global 'os.system'"),
                            (root / "two_convs.keras", "'model.heads.num_convs' = 1, but model.init_from "
                                                       f"{root / 'two_convs.keras'} has 2")):
        cases.append([f"--config={files['good']}", f"--model_dir={model_dir}", f"--set=model.init_from={init_from}"])
        expected.append(text)
    cases.append([f"--config={files['good']}", f"--model_dir={model_dir}", "--set=train.freeze=[backbone, head]"])
    expected.append("'train.freeze' = ('backbone', 'head'): names each of")
    # An image with more boxes than data.max_boxes (its own model folder: made before the batches are).
    coco = json.loads((files["data"] / "annotations" / "instances_train.json").read_text())
    image = coco["images"][0]
    crowded = [annotation for annotation in coco["annotations"] if annotation["image_id"] == image["id"]][:1] * 3
    coco["annotations"] += [{**annotation, "id": 1000 + index} for index, annotation in enumerate(crowded)]
    (root / "crowded.json").write_text(json.dumps(coco))
    count = sum(annotation["image_id"] == image["id"] for annotation in coco["annotations"])
    cases.append([f"--config={files['good']}", f"--model_dir={root / 'crowded_run'}", "--set=data.max_boxes=2",
                  f"--set=data.train.annotations={root / 'crowded.json'}"])
    expected.append(f"{files['data'] / 'train' / image['file_name']} (image {image['id']} of {root / 'crowded.json'}): "
                    f"{count} boxes (ignore regions included), more than data.max_boxes=2")
    assert_one_line_errors("train", cases, expected)
    assert not marker.exists()
    assert not os.path.exists(model_dir)
    passwd = open("/etc/passwd").readline().strip()
    result = run_cases("train", [{"argv": [f"--config={root / 'base_passwd.yaml'}", f"--model_dir={model_dir}"]}])
    assert passwd[:8] not in result[0]["status"]  # the base file's contents are never echoed


def test_readers_refuse_bad_annotation_files_in_one_line(files):
    root, data = files["root"], files["data"]
    cases, expected = [], []
    for name, text in (("images_number.json", "images"), ("categories_null.json", "categories"),
                       ("huge_coordinate.json", "huge_coordinate.json"), ("huge_width.json", "huge_width.json"),
                       ("deep.json", "deep.json"), ("duplicate_names.json", "duplicate_names.json"),
                       ("absent.json", "absent.json")):
        cases.append(["--format=coco", f"--annotations={root / name}", f"--images={data / 'train'}"])
        expected.append(text)
    cases.append(["--format=csv", f"--annotations={root / 'images.csv'}", f"--images={data / 'train'}",
                  f"--classes={root / 'classes.csv'}"])
    expected.append("classes.csv")
    cases.append(["--format=csv", f"--annotations={root / 'absent.csv'}", f"--images={data / 'train'}",
                  f"--classes={root / 'classes.csv'}"])
    expected.append("absent.csv")
    assert_one_line_errors("inspect_dataset", cases, expected)


def test_model_files_images_and_exports_are_refused_in_one_line(files):
    root = files["root"]
    out = str(root / "out")
    assert_one_line_errors("predict", [
        [f"--model={files['sequential']}", f"--output_dir={out}", str(files["gif_bomb"])],
        [f"--model={files['model']}", f"--output_dir={out}", str(files["gif_bomb"])],
        [f"--model={files['model']}", f"--output_dir={out}", str(files["fifo"])],
    ], ["not a RetinaNet", "8000 x 8000 pixels, more than 50000000", "fifo.png"])
    assert_one_line_errors("export", [
        [f"--model={files['sequential']}", f"--output={root / 'x'}"],
        [f"--model={files['model']}", "--format=tflite", f"--output={root / 'x.tflite'}", "--input_size=\u00b2x\u00b2"],
        [f"--model={files['model']}", "--format=tflite", f"--output={root / 'x.tflite'}",
         "--input_size=100000x100000"],
    ], ["not a RetinaNet", "--input_size", "--input_size"])
    assert_one_line_errors("evaluate", [
        [f"--model={root / f'{name}.tflite'}", f"--output_dir={out}"] for name in ("list", "no_padding",
                                                                                   "string_number")
    ], ["holds a JSON list", "needs 'padding_pixel'", "needs 'padding_pixel'"])


def test_the_other_command_lines_refuse_bad_input_in_one_line(files, tmp_path):
    """bin/study (a bad override in its last variant: nothing trains; a variant name leaving --work_dir),
    bin/fetch_raccoon (a FIFO in the local copy: no hang), bin/convert_dataset, bin/convert_torchvision (a FIFO, a
    file that is no .pth, and a .pth whose pickle would run a command: nothing runs), bin/generate_shapes and bin/demo
    (settings out of range)."""
    import shutil

    from pth_files import Archive, Call
    from test_study import EXPERIMENT, STUDY

    (tmp_path / "tiny.yaml").write_text(EXPERIMENT)
    studies = {"late_override.yaml": STUDY.replace("blowup2: [train.learning_rate=1.0e+13]",
                                                    "blowup2: [train.learning_rate=-1]"),
               "escaping_name.yaml": STUDY.replace("blowup2", "../../../x")}
    for name, text in studies.items():
        (tmp_path / name).write_text(text)
    work_dir = tmp_path / "study_work"
    assert_one_line_errors("study", [
        [f"--study={tmp_path / 'late_override.yaml'}", f"--work_dir={work_dir}"],
        [f"--study={tmp_path / 'escaping_name.yaml'}", f"--work_dir={work_dir}"],
    ], ["variant 'blowup2': ", "variant '../../../x' cannot be a folder name under --work_dir"])
    assert not work_dir.exists() or not any((work_dir / "variants").glob("*"))

    source = tmp_path / "raccoon"
    shutil.copytree(os.path.join(ROOT, "tests", "data", "raccoon"), source)
    os.remove(source / "LICENSE")
    os.mkfifo(source / "LICENSE")
    assert_one_line_errors("fetch_raccoon", [[f"--output_dir={tmp_path / 'fetched'}", f"--source_dir={source}"]],
                           [f"{source / 'LICENSE'}: not a regular file"])
    assert_one_line_errors("convert_dataset", [
        ["--format=coco", f"--annotations={files['root'] / 'images_number.json'}",
         f"--images={files['data'] / 'train'}", "--to=tfrecord", f"--output={tmp_path / 'records'}"],
    ], ["'images' must be a list, got 5"])
    not_a_pth = tmp_path / "weights.pth"
    not_a_pth.write_text("not a checkpoint")
    marker = tmp_path / "ran"
    command = Archive().write(tmp_path / "command.pth", {"weight": Call("os.system", f"touch {marker}")})
    assert_one_line_errors("convert_torchvision", [
        [f"--weights={weights}", "--variant=v1", f"--output={tmp_path / 'converted.keras'}"]
        for weights in (files["fifo"], not_a_pth, command)
    ], ["fifo.png", "weights.pth: not a zip archive",
        "command.pth: its pickle names the global 'os.system', which a weights file does not need: refused"])
    assert not marker.exists()
    assert_one_line_errors("generate_shapes", [
        [f"--output_dir={tmp_path / 'shapes'}", "--image_size=0"],
        [f"--output_dir={tmp_path / 'shapes'}", "--min_size=50", "--max_size=10"],
    ], ["image_size must be two positive integers", "max_size must be >= min_size (50), got 10"])
    assert_one_line_errors("demo", [
        [f"--config={os.path.join(ROOT, 'configs', 'demo.yaml')}", f"--work_dir={tmp_path / 'demo'}",
         "--set=model.decoder.iou_threshold=5"],
    ], ["'model.decoder.iou_threshold' must be in (0, 1], got 5"])


def test_fetch_weights_refuses_unknown_names_and_files_in_one_line(tmp_path):
    """bin/fetch_weights: an unknown name (the known ones listed), a FIFO under the published name in --source_dir
    (no hang), a local copy of another size or digest (both digests named), and a mirror without the file."""
    import hashlib

    cache = f"--cache_dir={tmp_path / 'cache'}"
    source = tmp_path / "source"
    source.mkdir()
    os.mkfifo(source / "resnet50-0676ba61.pth")
    (source / "retinanet_resnet50_fpn_coco-eeacb38b.pth").write_bytes(b"short")
    (source / "resnet101-63fe2227.pth").write_bytes(b"another file")
    found = hashlib.sha256(b"another file").hexdigest()
    assert_one_line_errors("fetch_weights", [
        ["no_such_weights", cache],
        ["torchvision_resnet50", f"--source_dir={source}", cache],
        ["retinanet_resnet50_fpn_coco", f"--source_dir={source}", cache],
        ["torchvision_resnet101", f"--source_dir={source}", cache],
        ["keras_resnet50", f"--base_url=file://{tmp_path}/mirror", cache],
    ], ["unknown pretrained weights 'no_such_weights'; known: retinanet_resnet50_fpn_coco, ",
        f"{source}/resnet50-0676ba61.pth: not a regular file",
        f"{source}/retinanet_resnet50_fpn_coco-eeacb38b.pth: 5 bytes, not the pinned 136595076 bytes",
        f"{source}/resnet101-63fe2227.pth: SHA-256 {found} is not the pinned 63fe2227b86e8f1f2063f43a75c84d19",
        f"{tmp_path}/mirror/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5: cannot download (No such file or "
        "directory); without internet access, give --source_dir=a local copy"])
    assert not (tmp_path / "cache").exists() or not os.listdir(tmp_path / "cache")
