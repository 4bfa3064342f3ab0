"""TFRecord datasets (TF Object Detection API layout): write -> read round trip, the input pipeline on embedded
images, and the bad-input policy for what is specific to TFRecords."""

import io
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_retinanet.config import DataConfig
from keras_retinanet.data import DataError, DataPolicy, read_tfrecord, read_voc, write_tfrecords
from keras_retinanet.data.pipeline import encoded_images, inference_dataset, load_images, training_dataset

_EXIF_ORIENTATION = 0x0112


def _save_image(path, width, height, seed, orientation=1):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8)
    image = Image.fromarray(pixels)
    if orientation != 1:
        exif = Image.Exif()
        exif[_EXIF_ORIENTATION] = orientation
        image.save(path, exif=exif.tobytes(), quality=95)
    else:
        image.save(path)


def make_voc(root, class_ids=(("cat", 3), ("dog", 7))):
    """A small VOC dataset: (annotation folder, image folder, class file). Image 2 is a JPEG with EXIF orientation
    6 (boxes drawn on the stored pixels), image 3 a negative; a difficult object becomes an ignore region."""
    images, annotations = root / "JPEGImages", root / "Annotations"
    images.mkdir(parents=True)
    annotations.mkdir()
    specs = [
        ("a.png", 48, 32, 1,
         [("cat", 0, (3.3, 4.7, 20.1, 29.9)), ("dog", 1, (25, 2, 47, 15)), ("dog", 0, (10.5, 9, 40, 31))]),
        ("b.jpg", 40, 24, 6, [("dog", 0, (2, 3, 30, 20))]),
        ("c.png", 36, 36, 1, []),
    ]
    for index, (name, width, height, orientation, objects) in enumerate(specs):
        _save_image(str(images / name), width, height, seed=index, orientation=orientation)
        xml = "".join(
            f"<object><name>{cls}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for cls, difficult, (x1, y1, x2, y2) in objects
        )
        (annotations / f"{os.path.splitext(name)[0]}.xml").write_text(
            f"<annotation><filename>{name}</filename><size><width>{width}</width><height>{height}</height>"
            f"<depth>3</depth></size>{xml}</annotation>"
        )
    class_file = root / "classes.csv"
    class_file.write_text("".join(f"{name},{class_id}\n" for name, class_id in class_ids))
    return str(annotations), str(images), str(class_file)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """(VOC dataset, the same written to 2 TFRecord shards and read back, the shard paths)."""
    root = tmp_path_factory.mktemp("voc")
    voc = read_voc(*make_voc(root))
    prefix = str(root / "out" / "train")
    progress = []
    paths = write_tfrecords(voc, prefix, num_shards=2, progress=progress.append)
    assert progress == [1, 2, 3]
    assert paths == [f"{prefix}-00000-of-00002.tfrecord", f"{prefix}-00001-of-00002.tfrecord"]
    back = read_tfrecord(f"{prefix}-*-of-00002.tfrecord", classes=f"{prefix}.label_map.pbtxt")
    return voc, back, paths


def test_round_trip_gives_identical_records_and_pixels(converted):
    voc, back, _ = converted
    assert voc.records[1].orientation == 6 and voc.records[1].width == 24
    assert (back.class_names, back.category_ids) == (voc.class_names, voc.category_ids) == (["cat", "dog"], [3, 7])
    assert len(back.records) == len(voc.records) == 3 and not back.report.counts
    differences = []
    for original, read in zip(voc.records, back.records):
        assert (read.image_id, read.height, read.width, read.orientation) == (
            original.image_id, original.height, original.width, 1)
        np.testing.assert_array_equal(read.labels, original.labels)
        np.testing.assert_array_equal(read.ignore_labels, original.ignore_labels)
        for name in ("boxes", "ignore_boxes"):
            assert getattr(read, name).shape == getattr(original, name).shape
            differences.append(np.abs(getattr(read, name) - getattr(original, name)).max(initial=0.0))
    print(f"round trip: max abs box difference {max(differences):.3g} px")
    assert max(differences) <= 1e-3
    assert len(back.records[0].ignore_boxes) == 1 and back.records[0].ignore_labels.tolist() == [1]
    assert back.records[1].path.endswith("-00001-of-00002.tfrecord#0 (b.png)")  # re-encoded upright as PNG
    for original, read in zip(load_images(voc), load_images(back)):
        np.testing.assert_array_equal(read, original)


def test_classes_from_the_example_texts(converted):
    voc, _, paths = converted
    back = read_tfrecord(paths[0].replace("-00000-", "-*-"))
    assert (back.class_names, back.category_ids) == (["cat", "dog"], [3, 7])
    assert [record.labels.tolist() for record in back.records] == [record.labels.tolist() for record in voc.records]


def test_training_and_inference_batches_equal_those_of_the_image_files(converted):
    voc, back, _ = converted
    config = DataConfig(min_size=64, max_size=96, max_boxes=4, seed=5, scale_jitter=(0.8, 1.2), size_divisor=32)
    for (images, targets), (tf_images, tf_targets) in zip(
        training_dataset(voc, config, batch_size=2).take(3), training_dataset(back, config, batch_size=2).take(3)
    ):
        np.testing.assert_array_equal(tf_images.numpy(), images.numpy())
        np.testing.assert_array_equal(tf_targets["labels"].numpy(), targets["labels"].numpy())
        np.testing.assert_allclose(tf_targets["boxes"].numpy(), targets["boxes"].numpy(), atol=1e-3)
    batches = zip(inference_dataset(voc, config, 2), inference_dataset(back, config, 2))
    for (images, info), (tf_images, tf_info) in batches:
        np.testing.assert_array_equal(tf_images.numpy(), images.numpy())
        np.testing.assert_array_equal(tf_info["original_size"].numpy(), info["original_size"].numpy())


def _png(width=16, height=12):
    stream = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(stream, format="PNG")
    return stream.getvalue()


def _example(encoded=None, width=16, height=12, boxes=((0.1, 0.2, 0.5, 0.9),), labels=(1,), texts=("cat",),
             source_id="", file_name="x.png", **extra):
    """A serialized tf.Example in the TF Object Detection API layout; `extra`: more features as lists."""
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    floats = lambda values: tf.train.Feature(float_list=tf.train.FloatList(value=values))  # noqa: E731
    ints = lambda values: tf.train.Feature(int64_list=tf.train.Int64List(value=values))  # noqa: E731
    strings = lambda values: tf.train.Feature(bytes_list=tf.train.BytesList(value=values))  # noqa: E731
    feature = {
        "image/encoded": strings([_png() if encoded is None else encoded]),
        "image/filename": strings([file_name.encode()]),
        "image/source_id": strings([source_id.encode()]),
        "image/height": ints([height]),
        "image/width": ints([width]),
        **{f"image/object/bbox/{key}": floats(boxes[:, k]) for k, key in enumerate(("xmin", "ymin", "xmax", "ymax"))},
        "image/object/class/label": ints(labels),
        "image/object/class/text": strings([text.encode() for text in texts]),
        **{key: ints(values) for key, values in extra.items()},
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write(path, *examples):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example)
    return str(path)


def test_pixel_boxes_ignore_regions_and_image_ids(tmp_path):
    path = _write(
        tmp_path / "a.tfrecord",
        _example(source_id="12", boxes=[(0.25, 0.5, 0.5, 1.0), (0, 0, 0.5, 0.5), (0.5, 0, 1, 0.5)], labels=[1, 2, 1],
                 texts=["cat", "dog", "cat"],
                 **{"image/object/difficult": [0, 1, 0], "image/object/is_crowd": [0, 0, 1]}),
        _example(source_id="5", boxes=[], labels=[], texts=[]),
    )
    dataset = read_tfrecord(path)
    first, second = dataset.records
    assert (first.image_id, second.image_id) == (12, 5) and dataset.class_names == ["cat", "dog"]
    np.testing.assert_allclose(first.boxes, [[4, 6, 8, 12]])
    np.testing.assert_allclose(first.ignore_boxes, [[0, 0, 8, 6], [8, 0, 16, 6]])
    assert first.labels.tolist() == [0] and first.ignore_labels.tolist() == [1, 0]
    assert first.path == f"{path}#0 (x.png)"

    # Not all source ids are integers: ids 1, 2, ... in example order.
    path = _write(tmp_path / "b.tfrecord", _example(source_id="7"), _example(source_id="img.jpg"))
    assert [record.image_id for record in read_tfrecord(path).records] == [1, 2]
    path = _write(tmp_path / "c.tfrecord", _example(source_id="7"), _example(source_id="7"))
    with pytest.raises(DataError, match=r"c\.tfrecord#1 \(x\.png\): image/source_id '7' is also .*c\.tfrecord#0"):
        read_tfrecord(path)


def test_no_matching_file(tmp_path):
    with pytest.raises(DataError, match=r"nothing-\*\.tfrecord: no TFRecord file matches"):
        read_tfrecord(str(tmp_path / "nothing-*.tfrecord"))


def test_class_errors_name_shard_example_and_value(tmp_path):
    label_map = tmp_path / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "cat" }\nitem { id: 2 name: "dog" }\n')
    path = _write(tmp_path / "a.tfrecord", _example(), _example(labels=[5]))
    with pytest.raises(DataError, match=r"a\.tfrecord#1 \(x\.png\): object 1: class label 5 is not in the class file"):
        read_tfrecord(path, classes=str(label_map))
    two_texts = _example(labels=[1, 1], texts=["cat", "kat"], boxes=[(0, 0, 1, 1)] * 2)
    path = _write(tmp_path / "b.tfrecord", _example(), two_texts)
    with pytest.raises(DataError, match=r"b\.tfrecord#1 \(x\.png\): object 2: class label 1 is named 'kat', but 'cat'"):
        read_tfrecord(path)
    path = _write(tmp_path / "c.tfrecord", _example(texts=[]))
    with pytest.raises(DataError, match=r"c\.tfrecord#0 \(x\.png\): object 1: class label 1 has no .*class/text"):
        read_tfrecord(path)
    assert read_tfrecord(path, classes=str(label_map)).records[0].labels.tolist() == [0]
    path = _write(tmp_path / "d.tfrecord", _example(labels=[1, 2]))
    with pytest.raises(DataError, match=r"d\.tfrecord#0 \(x\.png\): object fields of different lengths"):
        read_tfrecord(path)


def test_undecodable_image_and_degenerate_box_are_skipped_and_counted(tmp_path):
    path = _write(
        tmp_path / "a.tfrecord",
        _example(source_id="1", file_name="one.png"),
        _example(source_id="2", encoded=b"not an image", file_name="two.png"),
        _example(source_id="3", encoded=_png(20, 10), width=20, height=10, labels=[1, 1], texts=["cat", "cat"],
                 boxes=[(0.5, 0.1, 0.5, 0.9), (0.1, 0.1, 0.2, 0.2)]),
    )
    dataset = read_tfrecord(path)
    assert [record.image_id for record in dataset.records] == [1, 3]
    assert dataset.report.counts == {"unreadable_image": 1, "degenerate_box": 1}
    np.testing.assert_allclose(dataset.records[1].boxes, [[2, 1, 4, 2]])
    # The images of the kept examples only, in order.
    assert [image.shape for image in load_images(dataset)] == [(12, 16, 3), (10, 20, 3)]
    assert len(list(encoded_images(dataset))) == 2
    with pytest.raises(DataError, match=r"a\.tfrecord#1 \(two\.png\): not a readable image .*data.strict"):
        read_tfrecord(path, policy=DataPolicy(strict=True))
    # Header-only inspection reads no more than the header: also enough to skip a non-image.
    assert len(read_tfrecord(path, policy=DataPolicy(verify_images=False)).records) == 2


def test_stated_size_not_the_images_is_skipped(tmp_path):
    path = _write(tmp_path / "a.tfrecord", _example(width=12, height=16), _example())
    dataset = read_tfrecord(path)
    assert len(dataset.records) == 1 and dataset.report.counts == {"size_mismatch": 1}


def test_corrupt_file_and_non_example_records(tmp_path):
    path = _write(tmp_path / "a.tfrecord", _example(), _example())
    with open(path, "rb") as file:
        content = file.read()
    truncated = tmp_path / "truncated.tfrecord"
    truncated.write_bytes(content[: len(content) - 20])
    with pytest.raises(DataError, match=r"truncated\.tfrecord: not a readable TFRecord file, or corrupt"):
        read_tfrecord(str(truncated))
    path = _write(tmp_path / "b.tfrecord", _example(), b"\x0a\x03junk")
    with pytest.raises(DataError, match=r"b\.tfrecord#1: not a tf\.Example"):
        read_tfrecord(path)
