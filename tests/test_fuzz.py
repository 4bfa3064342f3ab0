"""Property-based tests of the readers: valid COCO JSON, VOC XML, CSV rows and TFRecord examples, mutated by
Hypothesis (missing fields, wrong types, NaN and infinities, huge numbers, unicode and path tricks, truncation).
Each reader either returns a dataset whose boxes lie inside their images, or raises DataError naming the file;
never another exception, never a hang (FUZZ_EXAMPLES=400 tries more cases than the default 60). And image links
that lead out of the images folder are refused."""

import copy
import json
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from keras_retinanet.data import DataError, read_coco, read_csv, read_tfrecord, read_voc
from keras_retinanet.data.tfrecord import write_tfrecords

FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", 60)), deadline=5000,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

NASTY = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.sampled_from([0, -1, 1, 2**31, 2**63, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    st.text(max_size=12), st.sampled_from(["../a.png", "/etc/passwd", "a.png\0", "ä.png", "", " ", "a.png/.."]),
    st.lists(st.integers(-5, 50), max_size=5), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    for name, size in (("a.png", (40, 30)), ("b.png", (20, 50))):
        Image.new("RGB", size, (90, 90, 90)).save(folder / name)
    return folder


def _check(read, source):
    """The property: a dataset with every box inside its image, or a DataError that names `source`."""
    try:
        dataset = read()
    except DataError as error:
        assert str(source) in str(error), str(error)
        return
    for record in dataset.records:
        for boxes in (record.boxes, record.ignore_boxes):
            assert np.all(np.isfinite(boxes))
            assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= record.width) and np.all(
                boxes[:, 3] <= record.height), (boxes, record.width, record.height)
            assert np.all(boxes[:, 2:] > boxes[:, :2])


COCO = {
    "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
               {"id": 2, "file_name": "b.png", "width": 20, "height": 50}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10], "iscrowd": 0},
                    {"id": 2, "image_id": 2, "category_id": 2, "bbox": [1, 2, 10, 30]},
                    {"id": 3, "image_id": 1, "category_id": 2, "bbox": [20, 1, 15, 20], "iscrowd": 1}],
    "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
}


@FUZZ
@given(section=st.sampled_from(["images", "annotations", "categories"]), index=st.integers(0, 2),
       key=st.sampled_from(["id", "file_name", "width", "height", "image_id", "category_id", "bbox", "iscrowd",
                            "name"]),
       value=NASTY, delete=st.booleans(), cut=st.one_of(st.none(), st.integers(0, 400)))
def test_mutated_coco_json(folder, section, index, key, value, delete, cut):
    content = copy.deepcopy(COCO)
    entry = content[section][index % len(content[section])]
    if delete:
        entry.pop(key, None)
    else:
        entry[key] = value
    text = json.dumps(content)  # NaN and Infinity as Python writes them
    path = folder / "coco.json"
    path.write_text(text if cut is None else text[:cut])
    _check(lambda: read_coco(path, folder), path)


@FUZZ
@given(rows=st.lists(st.tuples(st.sampled_from(["a.png", "b.png", "../a.png", "c.png", "", "a.png\0"]),
                               *[st.one_of(st.integers(-10, 60), st.floats(allow_nan=True), st.text(max_size=4))
                                 for _ in range(4)],
                               st.sampled_from(["cat", "dog", "", " cat", "ü"])), max_size=6),
       extra=st.one_of(st.none(), st.text(max_size=20)))
def test_mutated_csv_rows(folder, rows, extra):
    lines = [",".join(str(field) for field in row) for row in rows]
    if extra is not None:
        lines.append(extra)
    path = folder / "labels.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    _check(lambda: read_csv(path, folder), path)


VOC = ("<annotation><filename>{filename}</filename><size><width>{width}</width><height>{height}</height></size>"
       "<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
       "<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object></annotation>")
VOC_FIELDS = {"filename": "a.png", "width": 40, "height": 30, "name": "cat", "difficult": 0, "xmin": 5, "ymin": 5,
              "xmax": 20, "ymax": 25}


@FUZZ
@given(field=st.sampled_from(sorted(VOC_FIELDS)), value=NASTY, cut=st.one_of(st.none(), st.integers(0, 300)))
def test_mutated_voc_xml(folder, field, value, cut):
    from xml.sax.saxutils import escape

    text = VOC.format(**{**VOC_FIELDS, field: escape(str(value))})
    (folder / "voc").mkdir(exist_ok=True)
    path = folder / "voc" / "a.xml"
    path.write_text(text if cut is None else text[:cut], encoding="utf-8", errors="surrogatepass")
    _check(lambda: read_voc(folder / "voc", folder), path)


@pytest.fixture(scope="module")
def tfrecord(folder):
    dataset = read_coco(_write(folder / "valid.json", COCO), folder)
    return write_tfrecords(dataset, str(folder / "records" / "train"))[0]


def _write(path, content):
    path.write_text(json.dumps(content))
    return path


@FUZZ
@given(position=st.integers(0, 10**6), replacement=st.binary(max_size=8), truncate=st.booleans())
def test_mutated_tfrecord_bytes(folder, tfrecord, position, replacement, truncate):
    data = open(tfrecord, "rb").read()
    position %= len(data)
    data = data[:position] if truncate else data[:position] + replacement + data[position + len(replacement):]
    path = folder / "mutated.tfrecord"
    path.write_bytes(data)
    _check(lambda: read_tfrecord(path), path)


def test_image_links_that_lead_out_of_the_images_folder_are_refused(folder, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    os.symlink(folder / "a.png", images / "outside.png")
    os.symlink(folder, images / "elsewhere")
    Image.new("RGB", (40, 30)).save(images / "inside.png")
    os.symlink(images / "inside.png", images / "alias.png")  # a link inside the folder is fine
    for name in ("outside.png", "elsewhere/a.png"):
        path = tmp_path / "labels.csv"
        path.write_text(f"{name},1,1,5,5,cat\n")
        with pytest.raises(DataError, match=f"image path '{name}' is a link to .*, outside the images folder"):
            read_csv(path, images)
    path.write_text("alias.png,1,1,5,5,cat\n")
    assert len(read_csv(path, images).records) == 1
