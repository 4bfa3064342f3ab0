"""The RetinaNet detector end to end: outputs, initial prior, fit, predict, saving, XLA and mixed precision."""

import contextlib
import io
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from keras_retinanet import RetinaNet
from keras_retinanet.backbones import ResNetBackbone
from keras_retinanet.layers import AnchorGenerator, DetectionDecoder, FeaturePyramid, RetinaNetHead
from keras_retinanet.losses import GIoULoss
from tiny import tiny_backbone, tiny_retinanet

COLOURS = np.array([(255, 40, 40), (40, 255, 40), (40, 40, 255)], np.float32)


def make_shapes(num_images, size=128, max_objects=3, seed=0):
    """Noisy images with 1..max_objects solid rectangles whose colour is their class; padded targets."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 60, (num_images, size, size, 3)).astype(np.float32)
    boxes = np.zeros((num_images, max_objects, 4), np.float32)
    labels = np.full((num_images, max_objects), -1, np.int32)
    for i in range(num_images):
        for j in range(rng.integers(1, max_objects + 1)):
            width, height = rng.integers(20, 60, 2)
            x, y = rng.integers(0, size - width), rng.integers(0, size - height)
            labels[i, j] = rng.integers(0, len(COLOURS))
            images[i, y : y + height, x : x + width] = COLOURS[labels[i, j]]
            boxes[i, j] = [x, y, x + width, y + height]
    return images, boxes, labels


def coco_ap50(boxes, labels, detections):
    """AP at IoU 0.5 (pycocotools) of `detections` (model.predict output) against padded xyxy ground truth."""
    ground_truth = {"images": [], "annotations": [], "categories": [{"id": c} for c in range(len(COLOURS))]}
    results = []
    for i in range(len(boxes)):
        ground_truth["images"].append({"id": i})
        for box, label in zip(boxes[i], labels[i]):
            if label >= 0:
                x1, y1, x2, y2 = map(float, box)
                ground_truth["annotations"].append(
                    {"id": len(ground_truth["annotations"]) + 1, "image_id": i, "category_id": int(label),
                     "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
                )
        for d in range(int(detections["num_detections"][i])):
            x1, y1, x2, y2 = map(float, detections["boxes"][i, d])
            results.append({"image_id": i, "category_id": int(detections["classes"][i, d]),
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(detections["scores"][i, d])})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = ground_truth
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats[1]


def test_outputs_match_the_anchors_for_any_input_size():
    model = tiny_retinanet(num_classes=3)
    for height, width in [(128, 128), (96, 160), (100, 130)]:
        outputs = model(np.zeros((1, height, width, 3), np.float32))
        num_anchors = int(model.anchor_generator([height, width]).shape[0])
        assert outputs["class_logits"].shape == (1, num_anchors, 3)
        assert outputs["box_deltas"].shape == (1, num_anchors, 4)


def test_fresh_detector_predicts_the_prior_foreground_probability():
    """The paper's detector (ResNet-50, 256-channel FPN and heads) starts training at pi = 0.01 everywhere.

    A randomly initialised ResNet needs its batch norms to normalise (pretrained weights do this with their
    statistics), so the backbone here uses trainable BatchNormalization in a training-mode forward pass.
    """
    backbone = ResNetBackbone(50, normalization="batch_norm", frozen_stages=0, preprocessing="torch")
    model = RetinaNet(backbone, num_classes=80)
    images = np.random.default_rng(0).uniform(0, 255, (2, 128, 128, 3)).astype(np.float32)
    probabilities = tf.sigmoid(model(images, training=True)["class_logits"]).numpy()
    assert probabilities.shape == (2, 3069, 80)
    assert abs(probabilities.mean() - 0.01) < 5e-4
    assert np.abs(probabilities - 0.01).max() < 0.005


def test_training_learns_a_handful_of_images():
    keras.utils.set_random_seed(0)
    images, boxes, labels = make_shapes(8)
    model = tiny_retinanet(num_classes=3, filters=32, num_convs=2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    history = model.fit(images, {"boxes": boxes, "labels": labels}, batch_size=8, epochs=300, verbose=0)
    losses = history.history["loss"]
    assert losses[0] / losses[-1] >= 10, losses[::10]
    assert {"classification_loss", "box_loss"} <= set(history.history)
    detections = model.predict(images, verbose=0)
    assert coco_ap50(boxes, labels, detections) >= 0.9


@pytest.fixture(scope="module")
def detector():
    keras.utils.set_random_seed(1)
    model = RetinaNet(
        backbone=ResNetBackbone(18, frozen_stages=1),
        num_classes=3,
        feature_pyramid=FeaturePyramid(filters=16, name="feature_pyramid"),
        classification_head=RetinaNetHead(3, num_anchors=6, filters=16, num_convs=2, prior_probability=0.01,
                                          name="classification_head"),
        box_head=RetinaNetHead(4, num_anchors=6, filters=16, num_convs=2, name="box_head"),
        anchor_generator=AnchorGenerator(scales=(1.0, 1.5), aspect_ratios=(0.5, 1.0, 2.0)),
        decoder=DetectionDecoder(score_threshold=0.0, max_detections=20),
        box_loss=GIoULoss(),
        box_loss_weight=2.0,
    )
    # Nudge the weights away from the prior so that predictions are not all ties.
    head = model.classification_head.output_conv
    head.bias.assign(np.random.default_rng(0).normal(-3, 1, head.bias.shape).astype(np.float32))
    return model


def test_keras_file_round_trip_with_safe_mode(detector, tmp_path):
    images = np.random.default_rng(2).uniform(0, 255, (2, 96, 128, 3)).astype(np.float32)
    path = str(tmp_path / "detector.keras")
    detector.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9))
    detector.optimizer.build(detector.trainable_variables)  # as after training
    detector.save(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. Keras' "compile() was not called as part of model loading"
        restored = keras.saving.load_model(path, safe_mode=True)
    assert type(restored) is RetinaNet
    assert isinstance(restored.optimizer, keras.optimizers.SGD) and restored.optimizer.momentum == 0.9
    for key, value in detector(images).items():
        np.testing.assert_array_equal(restored(images)[key], value)
    for key, value in detector.predict(images, verbose=0).items():
        np.testing.assert_array_equal(restored.predict(images, verbose=0)[key], value)
    config = restored.get_config()
    anchors = config["anchor_generator"]["config"]
    assert anchors["scales"] == (1.0, 1.5) or anchors["scales"] == [1.0, 1.5]
    assert config["decoder"]["config"]["max_detections"] == 20
    assert config["box_coder"]["config"]["scale_clamp"] == pytest.approx(np.log(1000 / 16))
    assert config["box_loss"]["class_name"] == "GIoULoss" and config["box_loss_weight"] == 2.0
    assert restored.backbone.depth == 18


def test_predict_decodes_detections(detector):
    images = np.random.default_rng(3).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    detections = detector.predict(images, verbose=0)
    assert detections["boxes"].shape == (2, 20, 4)
    assert detections["classes"].dtype == np.int32
    assert (detections["num_detections"] == 20).all()  # score_threshold 0: every slot is filled
    assert (np.diff(detections["scores"], axis=1) <= 1e-6).all()  # sorted by score
    assert (detections["boxes"] >= 0).all() and (detections["boxes"] <= 64).all()  # clipped to the image


def test_content_sizes_clip_the_detections_and_the_old_names_still_work(detector):
    """`{"images", "content_sizes"}` clips each image's boxes to its content; the old `image_sizes` key and the
    old `decode_predictions` argument names give the same detections, with a DeprecationWarning."""
    images = np.random.default_rng(3).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    content_sizes = np.array([[40, 64], [64, 24]], np.int32)
    detections = detector.predict({"images": images, "content_sizes": content_sizes}, verbose=0)
    assert (detections["boxes"][0, :, 3] <= 40).all() and (detections["boxes"][1, :, 2] <= 24).all()
    assert detections["boxes"][0, :, 3].max() == 40 and detections["boxes"][1, :, 2].max() == 24
    with pytest.warns(DeprecationWarning, match="image_sizes is now called content_sizes"):
        old = detector.predict({"images": images, "image_sizes": content_sizes}, verbose=0)
    np.testing.assert_array_equal(old["boxes"], detections["boxes"])
    predictions = detector(images, training=False)
    with pytest.warns(DeprecationWarning, match="image_size is now called padded_size"):
        old = detector.decode_predictions(predictions, image_size=[64, 64], image_sizes=content_sizes)
    np.testing.assert_allclose(old["boxes"].numpy(), detections["boxes"], atol=0.01)  # eager vs predict's graph


def test_bounding_box_format_applies_to_fit_and_predict():
    keras.utils.set_random_seed(3)
    images, boxes, labels = make_shapes(2, size=64)
    xyxy = tiny_retinanet(num_classes=3)
    yxyx = tiny_retinanet(num_classes=3, bounding_box_format="yxyx")
    yxyx.set_weights(xyxy.get_weights())
    y_pred = xyxy(images)
    loss_xyxy = xyxy.compute_loss(images, {"boxes": boxes, "labels": labels}, y_pred)
    loss_yxyx = yxyx.compute_loss(images, {"boxes": boxes[..., [1, 0, 3, 2]], "labels": labels}, y_pred)
    np.testing.assert_allclose(loss_yxyx, loss_xyxy, rtol=1e-6)
    np.testing.assert_allclose(
        yxyx.predict(images, verbose=0)["boxes"], xyxy.predict(images, verbose=0)["boxes"][..., [1, 0, 3, 2]]
    )


@pytest.mark.slow  # trains for 15-70 s: `make test-slow`, which CI runs too
def test_fit_and_predict_under_mixed_bfloat16_and_xla():
    images, boxes, labels = make_shapes(2, size=64, seed=4)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = tiny_retinanet(num_classes=3)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), jit_compile=True)
        history = model.fit(images, {"boxes": boxes, "labels": labels}, epochs=2, verbose=0)
        detections = model.predict(images, verbose=0)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert model.classification_head.output_conv.compute_dtype == "bfloat16"
    assert np.isfinite(history.history["loss"]).all()
    assert detections["boxes"].dtype == np.float32 and detections["scores"].dtype == np.float32


def test_sample_weight_scales_images():
    images, boxes, labels = make_shapes(2, size=64, seed=5)
    model = tiny_retinanet(num_classes=3)
    y = {"boxes": boxes, "labels": labels}
    y_pred = model(images)
    only_first = model.compute_loss(images, y, y_pred, sample_weight=np.array([1.0, 0.0]))
    first = {"boxes": boxes[:1], "labels": labels[:1]}
    np.testing.assert_allclose(only_first, model.compute_loss(images[:1], first, model(images[:1])), rtol=1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="takes no `loss`"):
        tiny_retinanet().compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="outputs_per_anchor=3"):
        RetinaNet(tiny_backbone(), num_classes=5, classification_head=RetinaNetHead(3))
    with pytest.raises(ValueError, match="bounding_box_format"):
        tiny_retinanet(bounding_box_format="xyz")
    with pytest.raises(ValueError, match="levels 3-7"):
        RetinaNet(ResNetBackbone(18), 2, anchor_generator=AnchorGenerator(min_level=2, max_level=6,
                                                                           sizes=(16, 32, 64, 128, 256)))
    model = tiny_retinanet(num_classes=3)
    images, boxes, labels = make_shapes(1, size=64)
    labels[0, 0] = 3
    with pytest.raises(tf.errors.InvalidArgumentError, match="num_classes"):
        model.compute_loss(images, {"boxes": boxes, "labels": labels}, model(images))
