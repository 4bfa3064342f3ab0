"""Reading the data splits of an experiment config (`SplitConfig`) under its bad-input policy."""

from keras_retinanet.data import read_dataset
from keras_retinanet.data.policy import DataPolicy


def read_split(split, data_config):
    """The `DetectionDataset` of a `SplitConfig`, read with the bad-input policy of `data_config`; prints what the
    policy skipped or changed."""
    dataset = read_dataset(split.format, split.annotations, split.images, split.classes, DataPolicy.of(data_config))
    summary = dataset.report.summary()
    boxes = sum(len(record.boxes) for record in dataset.records)
    ignored = sum(len(record.ignore_boxes) for record in dataset.records)
    print(f"{dataset.source}: {len(dataset.records)} images, {boxes} boxes, {ignored} ignore regions, "
          f"{dataset.num_classes} classes" + (f"\n{summary}" if summary else ""))
    return dataset


def official_ground_truth(split):
    """The instances JSON of a COCO-format split (COCO metrics use its areas), else None (records are the truth)."""
    return split.annotations if split.format == "coco" else None
