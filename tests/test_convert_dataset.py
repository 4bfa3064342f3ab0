"""Dataset conversion: to COCO (pycocotools reads it, boxes and classes as the records), to TFRecord and back,
and `bin/convert_dataset` as a user runs it."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from keras_retinanet.cli.convert_dataset import convert_to_coco
from keras_retinanet.data import read_coco, read_csv, read_tfrecord, read_voc, write_tfrecords
from keras_retinanet.data.pipeline import load_images
from test_progress import final_lines
from test_tfrecord import make_voc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _assert_coco_equals_records(path, dataset):
    coco = COCO(path)
    assert {c["id"]: c["name"] for c in coco.loadCats(coco.getCatIds())} == dataset.label_map()
    assert sorted(coco.getImgIds()) == sorted(record.image_id for record in dataset.records)
    for record in dataset.records:
        image = coco.loadImgs(record.image_id)[0]
        assert (image["width"], image["height"]) == (record.width, record.height)
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=record.image_id, iscrowd=None))
        for crowd, boxes, labels in ((0, record.boxes, record.labels), (1, record.ignore_boxes, record.ignore_labels)):
            mine = [a for a in annotations if a["iscrowd"] == crowd]
            xywh = np.array([a["bbox"] for a in mine], np.float64).reshape(-1, 4)
            np.testing.assert_allclose(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1), boxes,
                                       atol=1e-4)
            assert [a["category_id"] for a in mine] == dataset.label_to_category_id(labels).tolist()


def _assert_same_records(read, expected):
    assert (read.class_names, read.category_ids) == (expected.class_names, expected.category_ids)
    assert len(read.records) == len(expected.records)
    for a, b in zip(read.records, expected.records):
        assert (a.image_id, a.width, a.height) == (b.image_id, b.width, b.height)
        for name in ("boxes", "labels", "ignore_boxes", "ignore_labels"):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-4)


def test_voc_to_coco(tmp_path):
    annotations, images, classes = make_voc(tmp_path / "voc")
    voc = read_voc(annotations, images, classes)
    path, images_dir = convert_to_coco(voc, str(tmp_path / "coco"), images)
    assert (path, images_dir) == (str(tmp_path / "coco" / "annotations.json"), images)
    _assert_coco_equals_records(path, voc)
    _assert_same_records(read_coco(path, images), voc)


def test_tfrecord_to_coco_writes_the_embedded_images(tmp_path):
    voc = read_voc(*make_voc(tmp_path / "voc"))
    write_tfrecords(voc, str(tmp_path / "tf" / "data"))
    embedded = read_tfrecord(str(tmp_path / "tf" / "data-*"))
    path, images_dir = convert_to_coco(embedded, str(tmp_path / "coco"))
    assert images_dir == str(tmp_path / "coco" / "images")
    assert sorted(os.listdir(images_dir)) == ["a.png", "b.png", "c.png"]
    _assert_coco_equals_records(path, embedded)
    from_files = read_coco(path, images_dir)
    _assert_same_records(from_files, embedded)
    for a, b in zip(load_images(from_files), load_images(voc)):
        np.testing.assert_array_equal(a, b)


def _run(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "bin", "convert_dataset"), *args], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT})


def test_cli_csv_to_tfrecord_and_a_data_error(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name, size in (("a.png", (40, 30)), ("b.png", (24, 24))):
        Image.new("RGB", size, (0, 128, 255)).save(images / name)
    csv = tmp_path / "train.csv"
    csv.write_text("a.png,1,2,30,25,cat\na.png,10,10,10,20,dog\nb.png,0.5,1.5,20,22.5,dog\n")  # one degenerate box
    prefix = str(tmp_path / "out" / "train")
    result = _run("--format=csv", f"--annotations={csv}", f"--images={images}", "--to=tfrecord",
                  f"--output={prefix}", "--num_shards=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{csv}: 2 images, 2 boxes, 0 ignore regions, 2 classes" in result.stdout
    assert f"{csv}: 1 x box with x2 <= x1 or y2 <= y1: box skipped" in result.stdout
    assert f"wrote 2 images to 2 shard(s) {prefix}-*-of-00002.tfrecord" in result.stdout
    assert [line[:2] for line in final_lines(result.stdout)] == [(2, 2)]  # the progress bar's one line in a pipe
    assert sorted(os.listdir(tmp_path / "out")) == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord", "train.label_map.pbtxt"]
    _assert_same_records(read_tfrecord(f"{prefix}-*", classes=f"{prefix}.label_map.pbtxt"),
                         read_csv(str(csv), str(images)))

    # A VOC object whose class is not in the class file: an error naming the XML file and the class.
    annotations, voc_images, _ = make_voc(tmp_path / "voc")
    classes = tmp_path / "classes.txt"
    classes.write_text("cat\n")
    result = _run("--format=voc", f"--annotations={annotations}", f"--images={voc_images}", f"--classes={classes}",
                  "--to=coco", f"--output={tmp_path / 'coco'}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"error: {annotations}/a.xml: object 2: class 'dog' is not in the class file {classes}" in result.stderr
    assert not os.path.exists(tmp_path / "coco")

    # An output folder where a file is: one line naming it, no traceback.
    result = _run("--format=csv", f"--annotations={csv}", f"--images={images}", "--to=coco", f"--output={csv}")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"error: --output={csv}: cannot write {csv} (File exists)"
