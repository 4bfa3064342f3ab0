"""Fine-tuning from a trained detector (`model.init_from`, `train.freeze`): the proof on data the source never saw,
the converted torchvision structure, the architecture rules and the one-line errors."""

import json
import math
import pathlib
import warnings

import keras
import numpy as np
import pytest
from pth_files import write_state_dict
from tiny import tiny_retinanet

from keras_retinanet.config import ConfigError, ExperimentConfig, from_dict, given_settings, load_config
from keras_retinanet.datasets import generate_shapes_dataset
from keras_retinanet.inference import ModelError, load_trained_model
from keras_retinanet.models import build_retinanet
from keras_retinanet.models.transfer import freeze, transfer_weights
from keras_retinanet.training import train
from keras_retinanet.training.fine_tuning import (
    Source, class_rows, read_source, resolved_config, same_name, starting_point,
)

CONFIG = str(pathlib.Path(__file__).parents[1] / "configs" / "fine_tuning_demo.yaml")


@pytest.mark.slow  # three trainings, about a minute: the default suite's fine-tuning route is the .pth test below
def test_a_detector_fine_tuned_on_new_classes_beats_the_same_model_from_scratch(tmp_path):
    """What `make demo-fine-tune` shows, in brief. Measured (2-core Intel Xeon, data.seed 0): the source's square AP
    before any step 0.125; after 100 iterations the fine-tuned model's AP 0.175, the same model's from scratch
    0.019."""
    from keras_retinanet.cli.fine_tuning_demo import TARGET_CLASSES, data_overrides, generate, held_out_ap

    folders = generate(str(tmp_path))
    source = [*data_overrides(folders["circles"]), "train.iterations=200", "train.lr_steps=[160]"]
    train(load_config(CONFIG, source), str(tmp_path / "source"), verbose=0, given=given_settings(CONFIG, source))

    overrides = [*data_overrides(folders["stars"]), f"model.init_from={tmp_path / 'source'}"]
    config, given = load_config(CONFIG, overrides), given_settings(CONFIG, overrides)
    # Before any step: the shared class is found, the new ones score the prior.
    untrained, report = starting_point(config, given, TARGET_CLASSES, (1, 2, 3))
    assert (report["matched"], report["new"]) == ("square", "star, hexagon")
    before = held_out_ap(untrained, folders["stars"], config.data)
    assert before["square"] > 0.08 and before["star"] < 0.01 and before["hexagon"] < 0.01, before
    bias = untrained.classification_head.output_conv.bias.numpy().reshape(-1, 3)
    np.testing.assert_allclose(bias[:, 1:], -math.log(99), rtol=1e-6)  # the prior 0.01
    assert not np.allclose(bias[:, 0], -math.log(99))  # square's rows are the source's

    fine_tuned = train(config, str(tmp_path / "fine_tuned"), verbose=0, given=given)
    scratch_overrides = data_overrides(folders["stars"])
    scratch = train(load_config(CONFIG, scratch_overrides), str(tmp_path / "scratch"), verbose=0,
                    given=given_settings(CONFIG, scratch_overrides))
    tuned_ap = held_out_ap(fine_tuned, folders["stars"], config.data)["all"]
    scratch_ap = held_out_ap(scratch, folders["stars"], config.data)["all"]
    assert tuned_ap > 2 * scratch_ap and tuned_ap - scratch_ap > 0.05, (tuned_ap, scratch_ap)

    head = (tmp_path / "fine_tuned" / "config.yaml").read_text().splitlines()[:3]
    assert head == [f"# loaded from {tmp_path / 'source'}: {report['loaded']}",
                    "# class rows matched by name: square",
                    "# classes initialised anew (prior probability): star, hexagon"]
    saved = load_trained_model(str(tmp_path / "fine_tuned"))
    assert saved.metadata["init_from"]["matched"] == "square"
    assert saved.metadata["config"]["model"]["init_from"] == str(tmp_path / "source")


def torchvision_structure_state(seed=0):
    """A torchvision RetinaNet v1 state dict (COCO's 91 classes) of seeded random numbers, with torchvision's keys
    and shapes: what `convert_torchvision_retinanet` reads from a real `.pth`."""
    from keras_retinanet.convert.torchvision import retinanet_targets, torchvision_config

    layout = build_retinanet(torchvision_config("v1").model, 91)
    rng = np.random.default_rng(seed)
    state = {}
    for key, (variable, is_kernel) in retinanet_targets(layout).items():
        shape = tuple(variable.shape)
        shape = (shape[3], shape[2], shape[0], shape[1]) if is_kernel else shape  # HWIO -> OIHW
        value = rng.normal(0.0, 0.02, shape)
        state[key] = np.abs(value) + 0.5 if key.endswith("running_var") else value
    return state


def test_a_torchvision_pth_fine_tunes_resumes_and_loads_safely(tmp_path):
    """The converted torchvision structure, from a .pth converted on the fly (written here as torch writes it)."""
    from keras_retinanet.convert.torchvision import convert_torchvision_retinanet

    state = torchvision_structure_state()
    coco, converted = tmp_path / "retinanet_coco.pth", convert_torchvision_retinanet(state)
    write_state_dict(coco, {key: value.astype(np.float32) for key, value in state.items()})
    data = tmp_path / "data"
    generate_shapes_dataset(str(data), splits={"train": 4}, image_size=(96, 96), min_size=16, max_size=40,
                            max_objects=3, classes=("square", "star", "hexagon"))
    annotations = data / "annotations" / "instances_train.json"
    dataset = json.loads(annotations.read_text())
    for category, name in zip(dataset["categories"], ("person", "Teddy_Bear", "raccoon")):
        category["name"] = name
    annotations.write_text(json.dumps(dataset))
    path = tmp_path / "fine_tune.yaml"
    path.write_text(f"""model:
  init_from: {coco}
data:
  train: {{annotations: {annotations}, images: {data}/train}}
  min_size: 96
  max_size: 96
  max_boxes: 8
train:
  batch_size: 2
  iterations: 1
  lr_steps: [10]
  warmup_iterations: 0
  checkpoint_every: 1
  eval_every: 1
  freeze: [backbone]
""")
    model_dir = tmp_path / "run"
    model = train(load_config(str(path)), str(model_dir), verbose=0, given=given_settings(str(path)))
    report = model.metadata["init_from"]
    # Every tensor of the torchvision file but the class logits, counted by its torchvision key.
    def count(prefix):
        return sum(key.startswith(prefix) for key in state)

    assert report["loaded"] == (
        f"backbone ({count('backbone.body.')} tensors), feature_pyramid ({count('backbone.fpn.')} tensors), "
        f"box_head ({count('head.regression_head.')} tensors), classification_head hidden layers "
        f"({count('head.classification_head.conv.')} tensors)")
    assert (report["matched"], report["new"]) == ("person, Teddy_Bear (teddy bear)", "raccoon")
    # The architecture is torchvision's although the file gives none of it; the input size is the file's.
    stored = model.metadata["config"]
    assert stored["model"]["backbone"]["preprocessing"] == "torch" and stored["data"]["resize_rule"] == "torchvision"
    assert stored["data"]["min_size"] == 96 and stored["train"]["freeze"] == ["backbone"]
    # Frozen: the backbone is the source's after training.
    for mine, theirs in zip(model.backbone.weights, converted.backbone.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())

    overrides = ["train.iterations=2"]
    resumed = train(load_config(str(path), overrides), str(model_dir), verbose=0,
                    given=given_settings(str(path), overrides))
    assert int(resumed.optimizer.iterations.numpy()) == 2  # one more step after the backup, not two from the start
    with pytest.raises(ConfigError, match=r"started with train.freeze = \['backbone'\], now it is \[\]"):
        overrides = ["train.iterations=3", "train.freeze=[]"]
        train(load_config(str(path), overrides), str(model_dir), verbose=0, given=given_settings(str(path), overrides))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns where the saved optimizer's variables do not fit
        loaded = keras.saving.load_model(str(model_dir / "model.keras"), safe_mode=True)
    assert loaded.num_classes == 3 and loaded.metadata["class_names"] == ["person", "Teddy_Bear", "raccoon"]
    assert not loaded.backbone.trainable and loaded.feature_pyramid.trainable  # the freeze is saved with the model


def tiny_source(config):
    return Source(model=None, class_names=["a"], config=config, origin="source.keras")


def test_the_source_gives_the_architecture_and_a_setting_written_otherwise_is_an_error(tmp_path):
    backbone = {"depth": 101, "preprocessing": "torch", "weights": None}
    theirs = from_dict(ExperimentConfig, {"model": {"backbone": backbone, "heads": {"num_convs": 2},
                                                    "decoder": {"max_detections": 300}},
                                          "data": {"min_size": 640, "resize_rule": "torchvision"}})
    path = tmp_path / "mine.yaml"
    path.write_text("model: {backbone: {depth: 101}, decoder: {score_threshold: 0.3}}\ndata: {max_size: 1000}\n")
    mine, given = load_config(str(path)), given_settings(str(path))
    resolved = resolved_config(mine, tiny_source(theirs), given)
    assert resolved.model.backbone.depth == 101 and resolved.model.backbone.preprocessing == "torch"
    assert resolved.model.heads.num_convs == 2 and resolved.data.resize_rule == "torchvision"
    assert resolved.model.decoder.max_detections == 300 and resolved.model.decoder.score_threshold == 0.3
    assert (resolved.data.min_size, resolved.data.max_size) == (640, 1000)
    assert resolved.model.backbone.weights is None

    for written, message in (
        ("model: {backbone: {depth: 50}}", r"'model.backbone.depth' = 50, but model.init_from source.keras has 101"),
        ("model: {anchors: {scales: [1.0, 2.0]}}",
         r"'model.anchors.scales' = \[1.0, 2.0\].*anchors per location: 6 here, 9 in the source"),
        ("data: {resize_rule: detectron}", r"'data.resize_rule' = 'detectron', but .* has 'torchvision'"),
        ("model: {backbone: {weights: imagenet}}", "both give starting weights"),
        # Written equal to the default, not to the source: still an error, never a silent choice.
        ("model: {heads: {num_convs: 4}}", r"'model.heads.num_convs' = 4, but .* has 2"),
    ):
        path.write_text(written + "\n")
        with pytest.raises(ConfigError, match=message):
            resolved_config(load_config(str(path)), tiny_source(theirs), given_settings(str(path)))


def test_class_rows_are_matched_by_name_never_by_position():
    assert same_name("Teddy_Bear", "teddy bear") and same_name("traffic  light", "Traffic_Light")
    assert not same_name("dog", "hot dog")
    source = ["__background__", "person", "N/A", "dog", "teddy bear"]
    assert class_rows(["raccoon", "Dog", "teddy_bear", "person"], source) == {1: 3, 2: 4, 3: 1}
    assert class_rows(["n/a", "background", "cat"], source) == {}


@pytest.mark.parametrize("separable", [False, True])
def test_transfer_copies_the_matched_rows_for_every_anchor_and_keeps_the_prior_elsewhere(separable):
    """A separable output conv's rows are its pointwise kernel's; its depthwise kernel, every class's, is copied."""
    keras.utils.set_random_seed(1)
    source, target = tiny_retinanet(num_classes=4, separable=separable), tiny_retinanet(3, separable=separable)
    source_conv, target_conv = source.classification_head.output_conv, target.classification_head.output_conv
    kernel_of = (lambda conv: conv.pointwise_kernel) if separable else (lambda conv: conv.kernel)
    side = 1 if separable else 3
    fresh_kernel = kernel_of(target_conv).numpy()
    transfer = transfer_weights(source, target, {0: 2, 2: 0})
    assert transfer.new_classes == [1]
    kernel = kernel_of(target_conv).numpy().reshape(side, side, 16, 9, 3)
    source_kernel = kernel_of(source_conv).numpy().reshape(side, side, 16, 9, 4)
    np.testing.assert_array_equal(kernel[..., 0], source_kernel[..., 2])
    np.testing.assert_array_equal(kernel[..., 2], source_kernel[..., 0])
    np.testing.assert_array_equal(kernel[..., 1], fresh_kernel.reshape(side, side, 16, 9, 3)[..., 1])
    if separable:
        np.testing.assert_array_equal(target_conv.depthwise_kernel.numpy(), source_conv.depthwise_kernel.numpy())
    for mine, theirs in zip(target.box_head.weights, source.box_head.weights):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    with pytest.raises(ValueError, match="does not fit"):
        transfer_weights(tiny_retinanet(num_classes=4, filters=32, separable=separable), target, {})
    with pytest.raises(ValueError, match=r"pyramid of the source has \d+ weights"):  # separable into full, or reverse
        transfer_weights(tiny_retinanet(num_classes=4, separable=not separable), target, {})


def test_frozen_components_leave_training_and_the_others_stay_in_it():
    model = tiny_retinanet(num_classes=2)
    trainable = {id(variable) for variable in model.trainable_variables}
    freeze(model, ["backbone", "class_head"])
    left = {id(variable) for variable in model.trainable_variables}
    for component, kept in ((model.backbone, False), (model.classification_head, False), (model.box_head, True),
                            (model.feature_pyramid, True)):
        ids = {id(variable) for variable in component.trainable_weights or component.weights}
        assert ids and (ids <= left) == kept and ids <= trainable, component.name
    assert left == trainable - {id(v) for v in (*model.backbone.weights, *model.classification_head.weights)}


def test_a_source_that_cannot_be_used_is_one_line_naming_it(tmp_path):
    with pytest.raises(ModelError, match=r"'model.init_from' = 'no_such_model': no such file .*retinanet_resnet50"):
        read_source("no_such_model")
    bare = tmp_path / "bare.keras"
    model = tiny_retinanet(num_classes=2)
    model.metadata = {"class_names": ["a", "b"], "category_ids": [1, 2]}
    model.save(str(bare))
    with pytest.raises(ModelError, match=f"{bare}: carries no experiment config"):
        read_source(str(bare))
    not_a_model = tmp_path / "weights.pth"
    not_a_model.write_bytes(b"\x80\x02}q\x00.")  # a raw pickle: torch's format before 1.6
    with pytest.raises(ModelError, match=str(not_a_model)):
        read_source(str(not_a_model))


def test_a_known_name_is_fetched_into_the_cache_once_and_backbone_weights_are_refused(tmp_path, monkeypatch):
    from keras_retinanet.config import to_dict

    monkeypatch.setenv("KERAS_RETINANET_CACHE", str(tmp_path))
    model = tiny_retinanet(num_classes=2)
    model.metadata = {"class_names": ["person", "dog"], "category_ids": [1, 18], "config": to_dict(ExperimentConfig())}
    model.save(str(tmp_path / "retinanet_resnet50_fpn_coco.keras"))  # as fetch_weights leaves a converted file
    source = read_source("retinanet_resnet50_fpn_coco")
    assert source.origin == str(tmp_path / "retinanet_resnet50_fpn_coco.keras")
    assert source.class_names == ["person", "dog"]
    (tmp_path / "torchvision_resnet50.weights.h5").write_bytes(b"")
    with pytest.raises(ModelError, match="'torchvision_resnet50' is backbone weights, not a detector: give them as "
                                         "model.backbone.weights="):
        read_source("torchvision_resnet50")
