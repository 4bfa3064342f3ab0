"""Bad files as users make them, through `read_dataset` (what every program reads with): each is one DataError that
names the file and the entry, line or value (cut when long), never another exception and never a hang."""

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from keras_retinanet.data import DataError, DetectionDataset, ImageRecord, read_dataset, write_tfrecords
from keras_retinanet.data.classes import read_class_file, write_label_map

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIFO = object()  # a file's content that makes it a FIFO instead
FOLDER = object()  # ... a folder

COCO = {
    "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}],
    "categories": [{"id": 1, "name": "cat"}],
}
VOC = ("<annotation><filename>a.png</filename><size><width>{width}</width><height>30</height></size><object>"
       "<name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>{xmax}</xmax><ymax>5</ymax></bndbox></object>"
       "</annotation>")


def coco(**sections):
    return json.dumps({**COCO, **sections})


def coco_text(old, new):
    text = json.dumps(COCO)
    assert old in text
    return text.replace(old, new)


# name: (format, {file: content}, annotations file, class file, fragments of the message besides the file)
CASES = {
    "coco: no such file": ("coco", {}, "gone.json", "", ["no such COCO annotation file"]),
    "coco: a folder": ("coco", {"in.json": FOLDER}, "in.json", "", ["is a folder, not a regular file"]),
    "coco: a FIFO": ("coco", {"in.json": FIFO}, "in.json", "", ["is a FIFO, device or socket"]),
    "coco: empty": ("coco", {"in.json": ""}, "in.json", "", ["empty file"]),
    "coco: only a byte-order mark": ("coco", {"in.json": "\ufeff"}, "in.json", "", ["not valid JSON", "BOM"]),
    "coco: images a number": ("coco", {"in.json": coco(images=5)}, "in.json", "",
                              ["top-level 'images' must be a list, got 5"]),
    "coco: categories null": ("coco", {"in.json": coco(categories=None)}, "in.json", "",
                              ["top-level 'categories' must be a list, got None"]),
    "coco: annotations an object": ("coco", {"in.json": coco(annotations={"id": 1})}, "in.json", "",
                                    ["top-level 'annotations' must be a list, got {'id': 1}"]),
    "coco: 400-digit box coordinate": (
        "coco", {"in.json": coco_text("[1, 1, 5, 5]", "[1, 1, 5, 5" + "0" * 400 + "]")}, "in.json", "",
        ["line 1 column 1", "the number 50000", "...", "out of bounds"]),
    "coco: 400-digit float coordinate": (
        "coco", {"in.json": coco_text("[1, 1, 5, 5]", "[1, 1, 5, 5" + "0" * 400 + ".5]")}, "in.json", "",
        ["annotation id 1", "non-finite coordinate"]),
    "coco: 5000-digit width": ("coco", {"in.json": coco_text('"width": 40', '"width": 4' + "0" * 5000)}, "in.json",
                               "", ["line 1 column 54: the number 40000", "out of bounds"]),
    "coco: image id beyond int64": ("coco", {"in.json": coco_text('"id": 1, "file', f'"id": {2**63}, "file')},
                                    "in.json", "", [f"the number {2**63} is out of bounds"]),
    "coco: nested 200k deep": ("coco", {"in.json": "[" * 200_000 + "]" * 200_000}, "in.json", "",
                               ["JSON nested too deeply"]),
    "coco: x + w overflows": ("coco", {"in.json": coco_text("[1, 1, 5, 5]", "[1e308, 1, 1.7e308, 5]")}, "in.json",
                              "", ["annotation id 1: box [1e+308, 1, inf, 6] has a non-finite coordinate"]),
    "coco: two categories named dog": (
        "coco", {"in.json": coco(categories=[{"id": 1, "name": "dog"}, {"id": 2, "name": "dog"}])}, "in.json", "",
        ["category id 2: name 'dog' is also the name of category id 1"]),
    "coco: category name not a string": (
        "coco", {"in.json": coco(categories=[{"id": 1, "name": ["cat"]}])}, "in.json", "",
        ["category id 1: name must be a non-empty string, got ['cat']"]),
    "coco: category id beyond int32": (
        "coco", {"in.json": coco(categories=[{"id": 2**40, "name": "cat"}])}, "in.json", "",
        ["category id 1099511627776: id must be an integer in 0..2147483647"]),
    "coco: a long bbox is cut": ("coco", {"in.json": coco_text("[1, 1, 5, 5]", json.dumps("x" * 5000))}, "in.json", "",
                                 ["annotation id 1: bbox must be 4 numbers", "'xxxxxxxx", "..."]),
    "csv: no such file": ("csv", {}, "gone.csv", "", ["no such CSV annotation file"]),
    "csv: a FIFO": ("csv", {"in.csv": FIFO}, "in.csv", "", ["is a FIFO, device or socket"]),
    "csv: 5000-digit coordinate": ("csv", {"in.csv": "a.png,1,1,5," + "9" * 5000 + ",cat\n"}, "in.csv", "",
                                   ["line 1: y2 must be a finite decimal number, got '9999", "...", "9999'"]),
    "csv: Arabic-Indic digit": ("csv", {"in.csv": "a.png,1,1,5,\u0665,cat\n"}, "in.csv", "",
                                ["line 1: y2 must be a finite decimal number, got '\u0665'"]),
    "csv: digits with an underscore": ("csv", {"in.csv": "a.png,1,1,5,1_0,cat\n"}, "in.csv", "",
                                       ["line 1: y2 must be a finite decimal number, got '1_0'"]),
    "csv: width beyond int32": (
        "csv", {"in.csv": f"path,x1,y1,x2,y2,class,width,height\na.png,1,1,5,5,cat,{2**40},30\n"}, "in.csv", "",
        ["line 2: width must be an integer of at most 2147483647"]),
    "csv: a quote left open": ("csv", {"in.csv": 'a.png,1,1,5,5,cat\na.png,2,2,9,9,"dog\n'}, "in.csv", "",
                               ["line 2: not valid CSV (unexpected end of data)"]),
    "csv: only a byte-order mark": ("csv", {"in.csv": "\ufeff"}, "in.csv", "", ["empty CSV file"]),
    "class file: no such file": ("csv", {"in.csv": "a.png,1,1,5,5,cat\n"}, "in.csv", "gone.csv",
                                 ["gone.csv: no such class file"]),
    "class file: a folder": ("csv", {"in.csv": "a.png,1,1,5,5,cat\n", "classes": FOLDER}, "in.csv", "classes",
                             ["classes: the class file is a folder"]),
    "class file: a FIFO": ("csv", {"in.csv": "a.png,1,1,5,5,cat\n", "classes": FIFO}, "in.csv", "classes",
                           ["classes: the class file is a FIFO"]),
    "class file: superscript id": ("csv", {"in.csv": "a.png,1,1,5,5,ring\n", "classes.csv": "ring,\u00b2\n"}, "in.csv",
                                   "classes.csv", ["classes.csv: line 1: class id must be an integer", "got '\u00b2'"]),
    "class file: Arabic-Indic id": ("csv", {"in.csv": "a.png,1,1,5,5,ring\n", "classes.csv": "ring,\u0663\n"},
                                    "in.csv", "classes.csv", ["classes.csv: line 1: class id", "got '\u0663'"]),
    "class file: 5000-digit id": ("csv", {"in.csv": "a.png,1,1,5,5,ring\n", "classes.csv": "ring," + "9" * 5000},
                                  "in.csv", "classes.csv", ["classes.csv: line 1: class id", "..."]),
    "class file: empty": ("csv", {"in.csv": "a.png,1,1,5,5,cat\n", "classes.csv": ""}, "in.csv", "classes.csv",
                          ["classes.csv: no classes in the class file"]),
    "class file: duplicate ids": ("csv", {"in.csv": "a.png,1,1,5,5,cat\n", "classes.csv": "cat,1\ndog,1\n"}, "in.csv",
                                  "classes.csv", ["classes.csv: line 2: id 1 is given twice"]),
    "label map: an item not closed": (
        "voc", {"voc/a.xml": VOC.format(width=40, xmax=5), "map.pbtxt": "item { id: 1 name: 'cat' }\nitem { id: 2"},
        "voc", "map.pbtxt", ["map.pbtxt: line 2: the message opened here is not closed"]),
    "label map: text between items": (
        "voc", {"voc/a.xml": VOC.format(width=40, xmax=5), "map.pbtxt": "item { id: 1 name: 'cat' }\ncat 2"},
        "voc", "map.pbtxt", ["map.pbtxt: line 2: expected 'item { ... }', got 'cat'"]),
    "label map: an unquoted name": ("voc", {"voc/a.xml": VOC.format(width=40, xmax=5), "map.pbtxt": "item {\n"
                                            "id: 1\nname: cat\n}"}, "voc", "map.pbtxt",
                                    ["map.pbtxt: line 3: a name must be a quoted string, got 'cat'"]),
    "label map: a non-ASCII id": ("voc", {"voc/a.xml": VOC.format(width=40, xmax=5),
                                          "map.pbtxt": "item { id: \u00b2 name: 'cat' }"}, "voc", "map.pbtxt",
                                  ["map.pbtxt: line 1: class id must be an integer in 0..2147483647, got '\u00b2'"]),
    "voc: 5000-digit coordinate": ("voc", {"voc/a.xml": VOC.format(width=40, xmax="5" * 5000)}, "voc", "",
                                   ["a.xml: object 1: <xmax> must be a finite decimal number, got '5555", "..."]),
    "voc: Arabic-Indic width": ("voc", {"voc/a.xml": VOC.format(width="\u0664\u0660", xmax=5)}, "voc", "",
                                ["a.xml: <width> must be a finite decimal number, got '\u0664\u0660'"]),
    "voc: an XML file that is a folder": ("voc", {"voc/a.xml": FOLDER}, "voc", "",
                                          ["a.xml: the VOC annotation file is a folder"]),
    "voc: an empty image-set list": ("voc", {"VOC/ImageSets/Main/train.txt": "\n"}, "VOC/ImageSets/Main/train.txt",
                                     "", ["train.txt: the image-set file lists no images"]),
    "voc: an image-set list that is a FIFO": ("voc", {"train.txt": FIFO}, "train.txt", "",
                                              ["train.txt: the image-set file is a FIFO"]),
    "tfrecord: a folder": ("tfrecord", {"records": FOLDER}, "records", "", ["the TFRecord file is a folder"]),
    "tfrecord: a FIFO": ("tfrecord", {"a.tfrecord": FIFO}, "a.tfrecord", "", ["the TFRecord file is a FIFO"]),
}


def _write(folder, files):
    Image.new("RGB", (40, 30)).save(folder / "a.png")
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is FIFO:
            os.mkfifo(path)
        elif content is FOLDER:
            path.mkdir()
        else:
            path.write_text(content, encoding="utf-8")


@pytest.mark.parametrize("format, files, annotations, classes, fragments", CASES.values(), ids=CASES)
def test_bad_files_are_one_data_error_naming_the_file_and_entry(tmp_path, format, files, annotations, classes,
                                                                 fragments):
    _write(tmp_path, files)
    with pytest.raises(DataError) as error:
        read_dataset(format, str(tmp_path / annotations), str(tmp_path), str(tmp_path / classes) if classes else "")
    message = str(error.value)
    assert message.startswith(str(tmp_path / (classes or annotations)))
    for fragment in fragments:
        assert fragment in message, message
    assert len(message) < len(str(tmp_path)) * 2 + 250, message  # long values are cut


def test_an_images_folder_that_is_a_file_is_named(tmp_path):
    _write(tmp_path, {"in.csv": "a.png,1,1,5,5,cat\n"})
    with pytest.raises(DataError, match=r"in.csv: images directory '.*a.png' is not a folder$"):
        read_dataset("csv", str(tmp_path / "in.csv"), str(tmp_path / "a.png"))


def test_tfrecord_texts_naming_two_labels_are_an_error(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    record = ImageRecord(1, str(tmp_path / "a.png"), 30, 40, [[1, 1, 5, 5], [2, 2, 9, 9]], [0, 1])
    write_tfrecords(DetectionDataset([record], ["dog", "dog"], [1, 2]), str(tmp_path / "train"))
    with pytest.raises(DataError, match=r"train-00000-of-00001.tfrecord#0 \(a.png\): object 2: class label 2 is named "
                                        r"'dog', and so is class label 1 at .*#0 \(a.png\): object 1"):
        read_dataset("tfrecord", str(tmp_path / "train-*"))


def test_label_maps_read_back_names_with_quotes_and_other_fields(tmp_path):
    path = str(tmp_path / "map.pbtxt")
    write_label_map(path, [1, 7], ['say "cheese"', "back\\slash \u00e9"])
    assert read_class_file(path) == ([1, 7], ['say "cheese"', "back\\slash \u00e9"])
    (tmp_path / "other.pbtxt").write_text(
        "# a label map of the TF Object Detection API\nitem: {\n  name: 'person'\n  id: 1\n  display_name: \"Person\"\n"
        "  keypoints { id: 0 label: 'nose' }\n  frequency: FREQUENT\n}\nitem { display_name: 'car' id: 3 }\n")
    assert read_class_file(str(tmp_path / "other.pbtxt")) == ([1, 3], ["person", "car"])


def test_inspect_dataset_prints_one_line_for_a_coco_file_whose_images_are_a_number(tmp_path):
    _write(tmp_path, {"in.json": coco(images=5)})
    process = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "inspect_dataset"), "--format=coco",
         f"--annotations={tmp_path / 'in.json'}", f"--images={tmp_path}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert process.returncode == 1 and "Traceback" not in process.stderr, process.stderr[-2000:]
    assert process.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path / 'in.json'}: top-level 'images' must be a list, got 5")
