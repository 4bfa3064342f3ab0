"""COCO evaluation of a trained detector (`keras_retinanet.evaluation.detector`)."""

import pytest

from keras_retinanet.data import DataError, DetectionDataset
from keras_retinanet.evaluation.detector import result_category_ids


def test_evaluation_maps_model_labels_to_the_dataset_classes_by_id_and_name(tmp_path):
    """Labels are positions in the model's class list: a dataset whose ids or names differ is refused (it would
    silently mislabel); a dataset with a subset of the model's classes (COCO's 80 of torchvision's 91) is scored on
    those, the other classes' detections left out."""
    label_map = {0: "__background__", 1: "cat", 2: "N/A", 3: "dog"}
    subset = DetectionDataset([], ["cat", "dog"], [1, 3], source="val.json")
    assert result_category_ids(label_map, subset) == [0, 1, 2, 3]
    for names, ids in ((["dog", "cat"], [1, 3]), (["cat", "dog"], [1, 2])):
        with pytest.raises(DataError, match=r"val.csv: classes \{.*\} \(category id: name\) are not classes of"):
            result_category_ids(label_map, DetectionDataset([], names, ids, source="val.csv"))
    assert result_category_ids(None, subset) == [1, 3]
