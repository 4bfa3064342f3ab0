"""Readers as parsers: every reader has one signature (annotations, images, classes, policy), the old forms still
work with a DeprecationWarning, the parsers only parse (image names as written, no images folder needed) and the
names that left `keras_retinanet.data.policy` are still found there."""

import importlib
import inspect
import json
import warnings

import numpy as np
import pytest
from PIL import Image
from test_tfrecord import make_voc

from keras_retinanet.data import DataError, DataPolicy, read_coco, read_csv, read_tfrecord, read_voc, write_tfrecords
from keras_retinanet.data.coco import parse_coco
from keras_retinanet.data.csv import parse_csv
from keras_retinanet.data.records import AnnotatedImage
from keras_retinanet.data.voc import parse_voc

READERS = (read_coco, read_csv, read_tfrecord, read_voc)
STRICT = DataPolicy(strict=True)


def _image(path, width=30, height=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(path)


@pytest.fixture
def coco(tmp_path):
    """(instances JSON, images folder): one 30 x 20 image whose one box crosses its border (clipped, or an error
    under a strict policy)."""
    _image(tmp_path / "images" / "a.png")
    content = {"images": [{"id": 1, "file_name": "a.png", "width": 30, "height": 20}],
               "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 5, 20, 5]}],
               "categories": [{"id": 1, "name": "cat"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(content))
    return str(path), str(tmp_path / "images")


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """(TFRecord shard pattern, its label map) of a small VOC dataset whose class texts are "cat" and "dog"."""
    root = tmp_path_factory.mktemp("signature")
    prefix = str(root / "tf" / "data")
    write_tfrecords(read_voc(*make_voc(root / "voc")), prefix)
    return f"{prefix}-*", f"{prefix}.label_map.pbtxt"


def test_every_reader_has_one_signature():
    parameters = {reader.__name__: [(p.name, p.default) for p in inspect.signature(reader).parameters.values()]
                  for reader in READERS}
    expected = [("annotations", inspect.Parameter.empty), ("images", None), ("classes", None),
                ("policy", DataPolicy())]
    assert parameters == dict.fromkeys(parameters, expected)


def test_old_keywords_work_with_a_deprecation_warning(coco, tmp_path):
    expected = [record.boxes.tolist() for record in read_coco(*coco).records]
    with pytest.warns(DeprecationWarning, match=r"read_coco\(annotations_path=...\) is now read_coco\(annotations="):
        dataset = read_coco(annotations_path=coco[0], images_dir=coco[1])
    assert [record.boxes.tolist() for record in dataset.records] == expected == [[[20, 5, 30, 10]]]
    (tmp_path / "labels.csv").write_text("a.png,1,2,10,12,cat\n")
    with pytest.warns(DeprecationWarning, match=r"read_csv\(images_dir=...\) is now read_csv\(images=...\)"):
        assert read_csv(str(tmp_path / "labels.csv"), images_dir=coco[1]).class_names == ["cat"]
    with pytest.raises(TypeError, match="both 'images_dir' and its new name 'images'"):
        read_csv(str(tmp_path / "labels.csv"), images=coco[1], images_dir=coco[1])


def test_read_coco_takes_its_old_positional_policy_with_a_warning(coco):
    with pytest.warns(DeprecationWarning, match=r"read_coco\(annotations, images, policy\) is now"):
        with pytest.raises(DataError, match="crosses the border.*data.strict is set"):  # the policy was used
            read_coco(*coco, STRICT)
    with pytest.raises(DataError, match="crosses the border"):
        read_coco(*coco, policy=STRICT)
    with pytest.raises(DataError, match=r"COCO files carry their categories; a class file \(classes.txt\) is not"):
        read_coco(*coco, "classes.txt")


def test_read_tfrecord_takes_its_old_positional_classes_with_a_warning(shards):
    pattern, label_map = shards
    with pytest.warns(DeprecationWarning, match=r"read_tfrecord\(pattern, classes, policy\) is now"):
        old = read_tfrecord(pattern, label_map, DataPolicy(verify_images=False))
    with pytest.warns(DeprecationWarning, match=r"read_tfrecord\(pattern=...\) is now read_tfrecord\(annotations="):
        old_keyword = read_tfrecord(pattern=pattern, classes=label_map)
    new = read_tfrecord(pattern, classes=label_map)
    assert old.category_ids == old_keyword.category_ids == new.category_ids == [3, 7]
    assert [r.labels.tolist() for r in old.records] == [r.labels.tolist() for r in new.records]
    with pytest.raises(DataError, match=r"TFRecord files hold their images; an images folder \(images\) is not used"):
        read_tfrecord(pattern, images="images")


def test_readers_without_an_images_folder_name_the_setting(tmp_path):
    (tmp_path / "labels.csv").write_text("a.png,1,2,10,12,cat\n")
    with pytest.raises(DataError, match=r"labels.csv: a csv split needs 'images', the image folder"):
        read_csv(tmp_path / "labels.csv")


def test_parsers_give_image_names_as_written_and_need_no_images(tmp_path):
    """No images folder, no image files: the parsers read the annotations alone; rows naming one file differently
    share its image; a name leaving the folder is the reading's to refuse."""
    (tmp_path / "labels.csv").write_text("a.png,1,2,10,12,cat\n./a.png,3,4,9,9,dog\n../b.png,,,,,\n")
    parsed = parse_csv(tmp_path / "labels.csv")
    assert [(image.path, image.where, len(image.boxes)) for image in parsed.images] == [
        ("a.png", f"{tmp_path / 'labels.csv'}: line 1", 2), ("../b.png", f"{tmp_path / 'labels.csv'}: line 3", 0)]
    assert all(isinstance(image, AnnotatedImage) for image in parsed.images)
    assert parsed.class_names == ["cat", "dog"]
    voc = parse_voc(make_voc(tmp_path / "voc")[0])
    assert [image.path for image in voc.images] == ["a.png", "b.jpg", "c.png"]
    (tmp_path / "instances.json").write_text(json.dumps({
        "images": [{"id": 5, "file_name": "sub/../x.png", "width": 3, "height": 2}], "annotations": [],
        "categories": [{"id": 2, "name": "cat"}]}))
    coco = parse_coco(tmp_path / "instances.json")
    assert ([image.path for image in coco.images], coco.class_names, coco.category_ids) == (["sub/../x.png"], ["cat"],
                                                                                            [2])
    with pytest.raises(DataError, match=r"line 3: image path '../b.png' must be a relative path inside the images"):
        read_csv(tmp_path / "labels.csv", tmp_path / "voc")


MOVED = {"AnnotatedImage": "records", "ImageInfo": "records", "DECODABLE_FORMATS": "images",
         "ImageProblem": "images", "inspect_image": "images", "gif_decoded_size": "images",
         "check_regular_file": "files", "read_data_file": "files", "parse_number": "files",
         "safe_image_path": "files", "images_folder": "files", "finish_dataset": "reading",
         "INSPECTION_THREADS": "reading"}


@pytest.mark.parametrize("name", sorted(MOVED))
def test_names_that_left_the_policy_module_are_found_there_with_a_warning(name):
    policy = importlib.import_module("keras_retinanet.data.policy")
    with pytest.warns(DeprecationWarning, match=f"policy.{name} moved to keras_retinanet.data.{MOVED[name]}.{name}"):
        value = getattr(policy, name)
    assert value is getattr(importlib.import_module(f"keras_retinanet.data.{MOVED[name]}"), name)


def test_the_policy_names_and_the_old_reader_paths_still_import():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from keras_retinanet.data.policy import NOTES, SKIPS, DataError, DataPolicy, DataReport, finish_record  # noqa
    from keras_retinanet.errors import InputError
    assert issubclass(DataError, InputError) and issubclass(DataError, ValueError)
    for module, reader in (("csv", read_csv), ("voc", read_voc), ("coco", read_coco), ("tfrecord", read_tfrecord)):
        with pytest.warns(DeprecationWarning, match=f"data.{module}.{reader.__name__} moved to keras_retinanet.data"):
            assert getattr(importlib.import_module(f"keras_retinanet.data.{module}"), reader.__name__) is reader
    with pytest.raises(AttributeError):
        importlib.import_module("keras_retinanet.data.policy").no_such_name
