"""The bad-input policy, case by case, through the CSV and VOC readers (COCO's structural errors are in
test_coco_data.py, TFRecord's in test_tfrecord.py): the exact outcome of each case, and `strict`."""

import io
import os

import numpy as np
import pytest
from PIL import Image, ImageOps

from keras_retinanet.config import DataConfig, SplitConfig
from keras_retinanet.data import DataError, DataPolicy, read_csv, read_dataset, read_voc
from keras_retinanet.data.pipeline import decode_image, inference_dataset, load_images, training_dataset
from keras_retinanet.data.images import orient_boxes
from keras_retinanet.data.splits import read_split

RACCOON = os.path.join(os.path.dirname(__file__), "data", "raccoon")
STRICT = DataPolicy(strict=True)


def _image(path, size=(40, 30), mode="RGB", **save_options):
    """A black image of `size` (width, height) with a white square at x 10-20, y 5-15."""
    image = Image.new(mode, size)
    image.paste(Image.new(mode, (10, 10), 255 if mode in ("L", "P") else (255,) * len(mode)), (10, 5))
    image.save(path, **save_options)
    return path


def _csv(tmp_path, lines, images=("a.png",), classes=None):
    for name in images:
        _image(tmp_path / name)
    path = tmp_path / "labels.csv"
    path.write_text("\n".join(lines) + "\n")
    if classes:
        (tmp_path / "classes.csv").write_text(classes)
    return str(path), str(tmp_path), str(tmp_path / "classes.csv") if classes else None


def _read(tmp_path, lines, images=("a.png",), classes=None, policy=DataPolicy()):
    return read_csv(*_csv(tmp_path, lines, images, classes), policy=policy)


def _boxes(dataset):
    return {os.path.basename(r.path): r.boxes.tolist() for r in dataset.records}


# name: (CSV lines, SKIPS reason, boxes of a.png after the policy, message fragments besides the file)
SKIPPED_OR_CHANGED = {
    "degenerate x2 == x1": (["a.png,12,5,12,15,dog"], "degenerate_box", [], ["line 1", "[12, 5, 12, 15]", "x2 <= x1"]),
    "degenerate y2 < y1": (["a.png,10,15,20,5,dog"], "degenerate_box", [], ["line 1", "[10, 15, 20, 5]"]),
    "wholly outside": (["a.png,1,1,2,2,dog", "a.png,41,5,50,15,dog"], "outside_box", [[1, 1, 2, 2]],
                       ["line 2", "[41, 5, 50, 15]", "outside the 40 x 30 image"]),
    "partly outside": (["a.png,-2.5,5,45,31,dog"], "clipped_box", [[0, 5, 40, 30]],
                       ["line 1", "[-2.5, 5, 45, 31]", "border of the 40 x 30 image"]),
    "missing image": (["a.png,10,5,20,15,dog", "gone.png,1,1,5,5,dog"], "missing_image", [[10, 5, 20, 15]],
                      ["line 2", "gone.png", "no such image file"]),
}


@pytest.mark.parametrize("lines, reason, boxes, fragments", SKIPPED_OR_CHANGED.values(), ids=SKIPPED_OR_CHANGED)
def test_skips_and_changes_are_counted_or_errors_when_strict(tmp_path, caplog, lines, reason, boxes, fragments):
    dataset = _read(tmp_path, lines)
    assert _boxes(dataset) == {"a.png": boxes}
    assert dict(dataset.report.counts) == {reason: 1}
    warnings = [record.getMessage() for record in caplog.records if record.name == "keras_retinanet.data"]
    assert len(warnings) == 1 and all(fragment in warnings[0] for fragment in fragments)
    assert dataset.report.summary() == f"{tmp_path / 'labels.csv'}: 1 x {_meaning(reason)}"
    with pytest.raises(DataError) as error:
        _read(tmp_path, lines, policy=STRICT)
    assert str(error.value).startswith(str(tmp_path / "labels.csv"))
    assert all(fragment in str(error.value) for fragment in fragments) and "data.strict" in str(error.value)


def _meaning(reason):
    from keras_retinanet.data.policy import SKIPS

    return SKIPS[reason]


def _truncated_jpeg(path):
    data = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(data, "JPEG")
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])


def _truncated_png(path):
    data = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(data, "PNG")
    path.write_bytes(data.getvalue()[: len(data.getvalue()) // 2])


BAD_FILES = {
    "truncated JPEG": (_truncated_jpeg, "unreadable_image", "truncated"),
    "truncated PNG": (_truncated_png, "unreadable_image", "not a readable image"),
    "text file": (lambda path: path.write_text("not an image"), "unreadable_image", "cannot identify image file"),
    "TIFF": (lambda path: Image.new("RGB", (8, 8)).save(path, "TIFF"), "unreadable_image",
             "TIFF images cannot be decoded by TensorFlow"),
    "empty file": (lambda path: path.write_bytes(b""), "unreadable_image", "not a readable image"),
}


@pytest.mark.parametrize("make, reason, fragment", BAD_FILES.values(), ids=BAD_FILES)
def test_unreadable_image_files_are_skipped_before_training(tmp_path, make, reason, fragment):
    make(tmp_path / "bad.jpg")
    lines = ["a.png,10,5,20,15,dog", "bad.jpg,1,1,5,5,dog"]
    dataset = _read(tmp_path, lines)
    assert [os.path.basename(r.path) for r in dataset.records] == ["a.png"]
    assert dict(dataset.report.counts) == {reason: 1}
    with pytest.raises(DataError, match=fragment) as error:
        _read(tmp_path, lines, policy=STRICT)
    assert "line 2" in str(error.value) and "bad.jpg" in str(error.value)
    # The training pipeline runs on what is left (TensorFlow would stop on the bad file).
    images, targets = next(iter(training_dataset(dataset, DataConfig(min_size=32, max_size=64, max_boxes=2), 1)))
    assert images.shape[0] == 1 and targets["labels"][0, 0] == 0


def test_truncated_file_passes_a_header_only_check(tmp_path):
    """verify_images=False reads headers only: fast, but a truncated file gets through (as documented)."""
    _truncated_jpeg(tmp_path / "bad.jpg")
    dataset = _read(tmp_path, ["bad.jpg,1,1,5,5,dog"], images=(), policy=DataPolicy(verify_images=False))
    assert len(dataset.records) == 1 and not dataset.report.counts


def test_images_over_the_pixel_limit_are_skipped(tmp_path):
    lines = ["a.png,10,5,20,15,dog"]
    dataset = _read(tmp_path, lines, policy=DataPolicy(max_image_pixels=40 * 30 - 1))
    assert dataset.records == [] and dict(dataset.report.counts) == {"oversized_image": 1}
    with pytest.raises(DataError, match="40 x 30 pixels, more than 1199"):
        _read(tmp_path, lines, policy=DataPolicy(strict=True, max_image_pixels=1199))
    assert len(_read(tmp_path, lines, policy=DataPolicy(max_image_pixels=1200)).records) == 1


def test_stated_size_that_fits_neither_orientation_skips_the_image(tmp_path):
    lines = ["filename,width,height,class,xmin,ymin,xmax,ymax", "a.png,40,31,dog,10,5,20,15"]
    dataset = _read(tmp_path, lines)
    assert dataset.records == [] and dict(dataset.report.counts) == {"size_mismatch": 1}
    with pytest.raises(DataError, match=r"line 2: annotated size 40 x 31 but .*a.png is 40 x 30"):
        _read(tmp_path, lines, policy=STRICT)


# name: (CSV lines, class file, message fragments)
ERRORS = {
    "class not in the class file": (["a.png,10,5,20,15,cat"], "dog,0\n", ["line 1", "class 'cat' is not in"]),
    "non-numeric coordinate": (["a.png,10,five,20,15,dog"], None,
                               ["line 1", "y1 must be a finite decimal number, got 'five'"]),
    "non-finite coordinate": (["a.png,10,5,inf,15,dog"], None,
                              ["line 1", "x2 must be a finite decimal number, got 'inf'"]),
    "some coordinates empty": (["a.png,10,,20,15,dog"], None, ["line 1", "a box needs x1, y1, x2, y2 and class"]),
    "no class": (["a.png,10,5,20,15,"], None, ["line 1", "a box needs"]),
    "wrong column count": (["a.png,10,5,20,15"], None, ["line 1", "expected 6 columns, got 5"]),
    "path with ..": (["../a.png,10,5,20,15,dog"], None, ["line 1", "'../a.png' must be a relative path inside"]),
    "absolute path": (["/etc/passwd,10,5,20,15,dog"], None, ["line 1", "'/etc/passwd' must be a relative path"]),
    "sub/../.. path": (["x/../../a.png,1,1,5,5,dog"], None, ["line 1", "'x/../../a.png'"]),
    "class id not an integer": (["a.png,10,5,20,15,dog"], "dog,one\n", ["classes.csv: line 1", "got 'one'"]),
    "class id negative": (["a.png,10,5,20,15,dog"], "dog,-1\n", ["classes.csv: line 1", "got '-1'"]),
    "class id twice": (["a.png,10,5,20,15,dog"], "dog,0\ncat,0\n", ["classes.csv: line 2", "id 0 is given twice"]),
    "class name twice": (["a.png,10,5,20,15,dog"], "dog,0\ndog,1\n", ["classes.csv: line 2", "'dog' is listed twice"]),
}


@pytest.mark.parametrize("lines, classes, fragments", ERRORS.values(), ids=ERRORS)
def test_errors_name_file_line_and_value(tmp_path, lines, classes, fragments):
    with pytest.raises(DataError) as error:
        _read(tmp_path, lines, classes=classes)
    assert str(error.value).startswith(str(tmp_path))
    for fragment in fragments:
        assert fragment in str(error.value)


def test_images_without_boxes_are_kept_as_negatives(tmp_path):
    _image(tmp_path / "b.png")
    dataset = _read(tmp_path, ["a.png,,,,,", "b.png,10,5,20,15,dog", "b.png,,,,,"], classes="dog,3\n")
    assert _boxes(dataset) == {"a.png": [], "b.png": [[10, 5, 20, 15]]}
    assert [r.image_id for r in dataset.records] == [1, 2]
    assert dataset.category_ids == [3] and dataset.class_names == ["dog"] and not dataset.report.counts
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "a.xml").write_text("<annotation><filename>a.png</filename></annotation>")
    voc = read_voc(tmp_path / "voc", tmp_path)
    assert voc.records[0].boxes.shape == (0, 4) and voc.class_names == []


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "LA"])
def test_grayscale_rgba_palette_and_16_bit_pngs_decode_to_rgb(tmp_path, mode):
    rng = np.random.default_rng(1)
    if mode == "I;16":
        values = rng.integers(0, 65536, (30, 40), np.uint16)
        image, expected = Image.fromarray(values), np.repeat((values >> 8).astype(np.uint8)[..., None], 3, -1)
    else:
        image = Image.fromarray(rng.integers(0, 255, (30, 40, 4), np.uint8), "RGBA").convert(mode)
        expected = np.asarray(image.convert("RGB"))
    image.save(tmp_path / "a.png")
    lines = ["a.png,10,5,20,15,dog"]
    (tmp_path / "labels.csv").write_text("\n".join(lines))
    dataset = read_csv(tmp_path / "labels.csv", tmp_path)
    assert len(dataset.records) == 1 and not dataset.report.counts
    np.testing.assert_array_equal(next(load_images(dataset)), expected)


def _exif_png(path, orientation, size=(40, 30)):
    """A stored image with a white square at x 10-20, y 5-15 and an EXIF orientation tag."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    _image(path, size, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_turns_pixels_and_boxes_alike(tmp_path, orientation):
    _exif_png(tmp_path / "a.png", orientation)
    dataset = _read(tmp_path, ["a.png,10,5,20,15,dog"], images=())
    record = dataset.records[0]
    upright = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "a.png")).convert("RGB"))
    assert (record.height, record.width) == upright.shape[:2]
    assert record.orientation == orientation
    assert dict(dataset.report.counts) == ({} if orientation == 1 else {"rotated_image": 1})
    pixels = next(load_images(dataset))
    np.testing.assert_array_equal(pixels, upright)  # the same turn as PIL's
    ys, xs = np.nonzero(pixels[..., 0] > 127)
    np.testing.assert_array_equal(record.boxes, [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]])
    # Training batches and predictions see the upright image too.
    images, targets = next(iter(training_dataset(
        dataset, DataConfig(min_size=min(upright.shape[:2]), max_size=100, horizontal_flip=False, max_boxes=1,
                            size_divisor=1), 1)))
    np.testing.assert_array_equal(images[0].numpy().astype(np.uint8), upright)
    np.testing.assert_array_equal(targets["boxes"][0], record.boxes)
    batch, info = next(iter(inference_dataset([record.path], DataConfig(min_size=30, max_size=100), 1)))
    assert info["original_size"][0].numpy().tolist() == list(upright.shape[:2])


def test_annotation_of_the_upright_image_is_not_turned_twice(tmp_path):
    """A 90-degree EXIF tag with the annotation's size already upright (30 x 40): the boxes are upright already."""
    _exif_png(tmp_path / "a.png", 6)
    lines = ["filename,width,height,class,xmin,ymin,xmax,ymax", "a.png,30,40,dog,15,10,25,20"]
    dataset = _read(tmp_path, lines, images=())
    np.testing.assert_array_equal(dataset.records[0].boxes, [[15, 10, 25, 20]])
    stored_frame = _read(tmp_path, ["filename,width,height,class,xmin,ymin,xmax,ymax",
                                    "a.png,40,30,dog,10,5,20,15"], images=())
    np.testing.assert_array_equal(stored_frame.records[0].boxes, orient_boxes([[10, 5, 20, 15]], 6, 40, 30))


def test_voc_reader_outcomes(tmp_path):
    """1-based inclusive VOC pixels -> continuous boxes; difficult objects -> ignore regions; errors name the file."""
    _image(tmp_path / "a.png")
    (tmp_path / "ann").mkdir()

    def write(objects, filename="a.png", size="<size><width>40</width><height>30</height></size>"):
        body = "".join(
            f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{box[0]}</xmin>"
            f"<ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
            for name, difficult, box in objects
        )
        (tmp_path / "ann" / "a.xml").write_text(f"<annotation><filename>{filename}</filename>{size}{body}</annotation>")

    write([("dog", 0, (11, 6, 20, 15)), ("cat", 1, (1, 1, 5, 5)), ("dog", 0, (30, 20, 30, 25))])
    dataset = read_voc(tmp_path / "ann", tmp_path)
    record = dataset.records[0]
    assert dataset.class_names == ["cat", "dog"] and dataset.category_ids == [1, 2]
    np.testing.assert_array_equal(record.boxes, [[10, 5, 20, 15], [29, 19, 30, 25]])
    np.testing.assert_array_equal(record.labels, [1, 1])
    np.testing.assert_array_equal(record.ignore_boxes, [[0, 0, 5, 5]])
    np.testing.assert_array_equal(record.ignore_labels, [0])
    (tmp_path / "classes.txt").write_text("dog\n")
    with pytest.raises(DataError, match=r"a.xml: object 2: class 'cat' is not in the class file"):
        read_voc(tmp_path / "ann", tmp_path, classes=str(tmp_path / "classes.txt"))
    write([("dog", 0, (11, "six", 20, 15))])
    with pytest.raises(DataError, match=r"a.xml: object 1: <ymin> must be a finite decimal number, got 'six'"):
        read_voc(tmp_path / "ann", tmp_path)
    write([("dog", 0, (11, 6, 20, 15))], filename="../a.png")
    with pytest.raises(DataError, match=r"a.xml: image path '../a.png' must be a relative path"):
        read_voc(tmp_path / "ann", tmp_path)
    (tmp_path / "ann" / "a.xml").write_text("<annotation><filename>a.png</filename>")
    with pytest.raises(DataError, match=r"a.xml: not valid XML"):
        read_voc(tmp_path / "ann", tmp_path)


def test_voc_image_set_lists_select_the_annotations(tmp_path):
    root = tmp_path / "VOC2007"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for name in ("000001", "000002"):
        _image(root / "JPEGImages" / f"{name}.png")
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.png</filename><object><name>dog</name><bndbox><xmin>11</xmin>"
            "<ymin>6</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></object></annotation>"
        )
    (root / "ImageSets/Main/train.txt").write_text("000002\n")
    dataset = read_voc(root / "ImageSets/Main/train.txt", root / "JPEGImages")
    assert [os.path.basename(r.path) for r in dataset.records] == ["000002.png"]
    (root / "ImageSets/Main/val.txt").write_text("000003\n")
    with pytest.raises(DataError, match=r"val.txt: 1 listed image\(s\) have no annotation file, e.g. .*000003.xml"):
        read_voc(root / "ImageSets/Main/val.txt", root / "JPEGImages")


def test_vendored_raccoon_images_read_the_same_through_voc_and_csv():
    voc = read_dataset("voc", os.path.join(RACCOON, "annotations"), os.path.join(RACCOON, "images"))
    csv = read_dataset("csv", os.path.join(RACCOON, "labels.csv"), os.path.join(RACCOON, "images"),
                       os.path.join(RACCOON, "classes.csv"))
    by_path = {record.path: record for record in csv.records}
    assert sorted(by_path) == sorted(record.path for record in voc.records) and len(by_path) >= 5
    for record in voc.records:
        other = by_path[record.path]
        assert (record.height, record.width) == (other.height, other.width)
        # The same pixel indices: VOC's are 1-based inclusive, the CSV's continuous.
        np.testing.assert_array_equal(record.boxes, other.boxes - np.float32([1, 1, 0, 0]))
    grayscale = [r for r in voc.records if r.path.endswith("raccoon-150.jpg")]
    assert Image.open(grayscale[0].path).mode == "L"
    assert decode_image(open(grayscale[0].path, "rb").read()).shape == (grayscale[0].height, grayscale[0].width, 3)
    assert voc.class_names == csv.class_names == ["raccoon"]
    assert not voc.report.counts and not csv.report.counts


def test_read_split_prints_the_run_summary(tmp_path, capsys):
    annotations, images, _ = _csv(tmp_path, ["a.png,10,5,20,15,dog", "a.png,12,5,12,15,dog", "gone.png,,,,,"])
    dataset = read_split(SplitConfig(annotations, images, "csv"), DataConfig())
    output = capsys.readouterr().out
    assert len(dataset.records) == 1
    assert f"{annotations}: 1 images, 1 boxes" in output
    assert f"{annotations}: 1 x {_meaning('degenerate_box')}" in output
    assert f"{annotations}: 1 x {_meaning('missing_image')}" in output
    with pytest.raises(DataError, match="data.strict"):
        read_split(SplitConfig(annotations, images, "csv"), DataConfig(strict=True))


def test_difficult_objects_count_neither_way_in_evaluation(tmp_path):
    """A confident detection on a VOC `difficult` object is not a false positive (as in VOC's own evaluation); the
    same detection on an unannotated spot is."""
    from keras_retinanet.data import to_coco_ground_truth
    from keras_retinanet.evaluation import evaluate_coco

    _image(tmp_path / "a.png", size=(100, 100))
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "a.xml").write_text(
        "<annotation><filename>a.png</filename>"
        "<object><name>dog</name><bndbox><xmin>11</xmin><ymin>11</ymin><xmax>40</xmax><ymax>40</ymax></bndbox>"
        "</object><object><name>dog</name><difficult>1</difficult><bndbox><xmin>61</xmin><ymin>61</ymin>"
        "<xmax>90</xmax><ymax>90</ymax></bndbox></object></annotation>"
    )
    dataset = read_voc(tmp_path / "ann", tmp_path)
    ground_truth = to_coco_ground_truth(dataset)
    assert [a["iscrowd"] for a in ground_truth["annotations"]] == [0, 1]
    hit = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "score": 0.5}
    on_difficult = {"image_id": 1, "category_id": 1, "bbox": [60, 60, 30, 30], "score": 0.9}
    elsewhere = {"image_id": 1, "category_id": 1, "bbox": [60, 0, 30, 30], "score": 0.9}
    assert evaluate_coco(ground_truth, [hit, on_difficult]).metrics["AP50"] == pytest.approx(1.0)
    assert evaluate_coco(ground_truth, [hit, elsewhere]).metrics["AP50"] < 0.6


@pytest.mark.parametrize("header", [[], ["filename,xmin,ymin,xmax,ymax,class"]], ids=["headerless", "header"])
def test_a_spreadsheets_byte_order_mark_is_not_part_of_the_first_name(tmp_path, header):
    path, images, _ = _csv(tmp_path, [*header, "a.png,10,5,20,15,dog"])
    with open(path, "rb") as file:
        content = file.read()
    with open(path, "wb") as file:
        file.write(b"\xef\xbb\xbf" + content.replace(b"\n", b"\r\n"))  # as spreadsheet programs save CSV
    (tmp_path / "classes.csv").write_bytes(b"\xef\xbb\xbfdog,0\r\n")
    dataset = read_csv(path, images, str(tmp_path / "classes.csv"), policy=STRICT)
    assert _boxes(dataset) == {"a.png": [[10, 5, 20, 15]]} and dataset.class_names == ["dog"]


def test_csv_that_is_not_utf8_names_the_file(tmp_path):
    path, images, _ = _csv(tmp_path, ["a.png,10,5,20,15,dog"])
    with open(path, "ab") as file:
        file.write("a.png,1,1,5,5,\u00e9t\u00e9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"labels.csv: not UTF-8 text .*save the file as UTF-8"):
        read_csv(path, images)


@pytest.mark.parametrize("declaration", [
    '<!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;&x;&x;&x;&x;&x;&x;">]>',
    '<!DOCTYPE a [<!ENTITY secret SYSTEM "file:///etc/passwd">]>',
], ids=["expansion", "external"])
def test_voc_xml_with_entity_declarations_is_refused_naming_the_file(tmp_path, declaration):
    _image(tmp_path / "a.png")
    (tmp_path / "ann").mkdir()
    (tmp_path / "ann" / "a.xml").write_text(
        f"<?xml version='1.0'?>{declaration}<annotation><filename>a.png</filename><object><name>&y;</name>"
        "<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object></annotation>")
    with pytest.raises(DataError, match=r"ann/a.xml: XML with Entities\w* is refused for safety"):
        read_voc(tmp_path / "ann", tmp_path)


def test_a_split_without_usable_images_is_an_error_with_the_skip_counts(tmp_path):
    path, images, _ = _csv(tmp_path, ["gone.png,10,5,20,15,dog", "lost.png,1,1,5,5,dog"], images=())
    with pytest.raises(DataError, match=r"labels.csv: no usable images \(2 x .*\)$"):
        read_dataset("csv", path, images)


def test_programs_report_a_split_without_usable_images_in_one_line(tmp_path):
    import subprocess
    import sys

    path, images, _ = _csv(tmp_path, ["gone.png,10,5,20,15,dog"], images=())
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    process = subprocess.run(
        [sys.executable, os.path.join(root, "bin", "inspect_dataset"), f"--annotations={path}", f"--images={images}",
         "--format=csv"], capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": root},
    )
    assert process.returncode == 1 and "Traceback" not in process.stderr
    assert process.stderr.strip().splitlines()[-1].startswith(f"error: {path}: no usable images (1 x ")
    process = subprocess.run(  # asked for, the traceback comes with the error
        [sys.executable, os.path.join(root, "bin", "inspect_dataset"), f"--annotations={path}", f"--images={images}",
         "--format=csv", "--traceback"], capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": root},
    )
    assert process.returncode == 1 and "Traceback (most recent call last)" in process.stderr
    assert "DataError" in process.stderr and "no usable images" in process.stderr
