"""Part of a trained detector as a start (`model.init_components`): the components copied and those built anew, the
architecture only the copied ones need, frozen batch norm in place of the source's batch norm, and the errors."""

import math

import keras
import numpy as np
import pytest
from tiny import tiny_experiment_file, tiny_retinanet

from keras_retinanet.config import ConfigError, ExperimentConfig, from_dict, given_settings, load_config
from keras_retinanet.layers.frozen_batch_norm import FrozenBatchNormalization
from keras_retinanet.models import build_detector
from keras_retinanet.models.transfer import transfer_weights
from keras_retinanet.training import train
from keras_retinanet.training.fine_tuning import (
    Source, read_source, report_lines, resolved_config, start_from, starting_point,
)

NEW_CLASSES = ("red circle", "red square", "green circle", "green square", "blue circle")


@pytest.fixture(scope="module")
def source_file(trained_tiny, tmp_path_factory):
    """The session's tiny detector (ResNet-18 x 0.25 with batch norm, trained two steps) with its batch norm
    weights and statistics made far from their initial values, so that copying them shows, saved as a .keras file."""
    _, model_dir = trained_tiny
    model = read_source(str(model_dir)).model
    rng = np.random.default_rng(0)
    for layer in model.backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.gamma.shape
            values = (rng.uniform(0.5, 1.5, shape), rng.normal(0.0, 0.5, shape), rng.normal(0.0, 0.5, shape),
                      rng.uniform(0.5, 2.0, shape))
            layer.set_weights([value.astype(np.float32) for value in values])
    path = tmp_path_factory.mktemp("init_components") / "source.keras"
    model.save(str(path))
    return str(path)


def _config(folder, model_yaml):
    path = folder / "mine.yaml"
    path.write_text(model_yaml)
    return load_config(str(path)), given_settings(str(path))


def test_a_backbone_alone_under_frozen_batch_norm_and_another_pyramid_heads_and_anchors(source_file, tmp_path):
    source = read_source(source_file)
    assert source.config.model.backbone.normalization == "batch_norm"
    config, given = _config(tmp_path, f"""model:
  init_from: {source_file}
  init_components: [backbone]
  backbone: {{normalization: frozen_bn}}
  anchors: {{sizes: [24, 48, 96, 192, 384], scales: [1.0, 1.5]}}
  pyramid: {{filters: 32}}
  heads: {{filters: 32, num_convs: 2, prior_probability: 0.02}}
""")
    model, report = starting_point(config, given, NEW_CLASSES, range(1, 6))
    assert model.backbone.normalization == "frozen_bn" and model.backbone.depth == 18  # the rest is the source's
    assert (model.feature_pyramid.filters, model.anchor_generator.num_anchors_per_location) == (32, 6)

    theirs = source.model.backbone
    frozen = [layer for layer in model.backbone.layers if isinstance(layer, FrozenBatchNormalization)]
    assert len(frozen) == sum(isinstance(layer, keras.layers.BatchNormalization) for layer in theirs.layers) > 0
    assert not any(weight.trainable for layer in frozen for weight in layer.weights)  # kept as they are
    assert len(model.backbone.weights) == len(theirs.weights)
    for mine, other in zip(model.backbone.weights, theirs.weights):
        assert mine.name == other.name
        np.testing.assert_array_equal(mine.numpy(), other.numpy())
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    for mine, other in zip(model.backbone(images, training=False), theirs(images, training=False)):
        other = other.numpy()
        np.testing.assert_allclose(mine.numpy(), other, rtol=1e-4, atol=1e-5 * np.abs(other).max())

    bias = model.classification_head.output_conv.bias.numpy()
    np.testing.assert_allclose(bias, -math.log(0.98 / 0.02), rtol=1e-6)  # the prior, for every class
    assert report == {"source": source_file, "loaded": f"backbone ({len(theirs.weights)} tensors)", "matched": "none",
                      "new": ", ".join(NEW_CLASSES), "fresh": "pyramid, box_head, class_head"}
    assert report_lines(report)[3] == ("components initialised anew (model.init_components leaves them out): "
                                       "pyramid, box_head, class_head")
    assert model.metadata["config"]["model"]["init_components"] == ["backbone"]


def test_the_components_left_out_keep_their_fresh_weights(source_file):
    """The source's own architecture: the pyramid copied, both heads as built (the source's classes are other ones
    and their rows are not matched), whatever the shapes allow."""
    source = read_source(source_file)
    config = from_dict(ExperimentConfig, {"model": {"init_from": source_file,
                                                    "init_components": ["backbone", "pyramid"]}})
    config = resolved_config(config, source, frozenset({"model.init_from", "model.init_components"}))
    keras.utils.set_random_seed(5)  # not the source's seed: fresh weights differ from its initial ones
    model = build_detector(config, source.class_names, range(1, len(source.class_names) + 1))
    report = start_from(source, model, source.class_names, config.model.init_components)
    assert report["fresh"] == "box_head, class_head" and report["matched"] == "none"
    for mine, theirs in zip((model.backbone, model.feature_pyramid), (source.model.backbone,
                                                                        source.model.feature_pyramid)):
        for a, b in zip(mine.weights, theirs.weights):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    for mine, theirs in zip((model.box_head, model.classification_head),
                            (source.model.box_head, source.model.classification_head)):
        kernels = [(a.numpy(), b.numpy()) for a, b in zip(mine.weights, theirs.weights) if "kernel" in a.path]
        assert kernels and all(a.shape == b.shape and not np.allclose(a, b) for a, b in kernels)
    np.testing.assert_allclose(model.classification_head.output_conv.bias.numpy(), -math.log(99), rtol=1e-6)


def _source(**backbone):
    config = from_dict(ExperimentConfig, {"model": {"backbone": {"weights": None, **backbone}}})
    return Source(model=None, class_names=["a"], config=config, origin="source.keras")


@pytest.mark.parametrize("components, written, message", [
    # Frozen batch norm replaces batch norm, never the other way round.
    ("[backbone]", "backbone: {normalization: batch_norm}",
     r"'model.backbone.normalization' = 'batch_norm', but model.init_from source.keras has 'frozen_bn' \(of its "
     r"changes, only frozen_bn in place of the source's batch_norm keeps the weights\)"),
    ("[backbone]", "backbone: {depth: 34, weights: null}",
     r"'model.backbone.depth' = 34, but .* has 50: .*another model$"),
    ("[backbone, pyramid]", "pyramid: {filters: 128}",
     r"'model.pyramid.filters' = 128, .* or copy only components that do not need it \(model.init_components: of "
     r"\['backbone'\]\)"),
    ("[class_head]", "anchors: {scales: [1.0]}",
     r"'model.anchors.scales' = \[1.0\], .*anchors per location: 3 here, 9 in the source.*of \['backbone', "
     r"'pyramid'\]"),
])
def test_an_architecture_the_copied_components_need_is_refused_with_the_way_out(tmp_path, components, written,
                                                                                 message):
    config, given = _config(tmp_path, f"model:\n  init_from: x\n  init_components: {components}\n  {written}\n")
    with pytest.raises(ConfigError, match=message):
        resolved_config(config, _source(), given)


def test_what_the_copied_components_do_not_need_is_the_configs(tmp_path):
    config, given = _config(tmp_path, """model:
  init_from: x
  init_components: [backbone, pyramid]
  heads: {num_convs: 2}
  anchors: {scales: [1.0]}
data: {min_size: 320}
""")
    resolved = resolved_config(config, _source(normalization="batch_norm", depth=101), given)
    assert (resolved.model.heads.num_convs, resolved.model.anchors.scales) == (2, (1.0,))
    assert (resolved.model.backbone.depth, resolved.model.backbone.normalization) == (101, "batch_norm")
    assert resolved.model.init_components == ("backbone", "pyramid") and resolved.data.min_size == 320
    config, given = _config(tmp_path, "model: {init_from: x, backbone: {normalization: frozen_bn}}\n")
    resolved = resolved_config(config, _source(normalization="batch_norm"), given)
    assert resolved.model.backbone.normalization == "frozen_bn"
    assert resolved.model.init_components == ("backbone", "pyramid", "box_head", "class_head")


@pytest.mark.parametrize("overrides, message", [
    (["model.init_from=x", "model.init_components=[backbone, heads]"],
     r"'model.init_components' = \('backbone', 'heads'\): names one or more of \('backbone', 'pyramid', "
     r"'box_head', 'class_head'\)"),
    (["model.init_from=x", "model.init_components=[]"], r"'model.init_components' = \(\): names one or more"),
    (["model.init_from=x", "model.init_components=[pyramid, pyramid]"], "each at most once"),
    (["model.init_components=[backbone]"], r"'model.init_from' = None: init_components says what init_from gives"),
])
def test_init_components_names_components_and_needs_init_from(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_transfer_copies_only_the_components_named():
    keras.utils.set_random_seed(2)
    source, target = tiny_retinanet(num_classes=2), tiny_retinanet(num_classes=3)
    before = {component: [weight.numpy() for weight in getattr(target, component).weights]
              for component in ("feature_pyramid", "box_head")}
    transfer = transfer_weights(source, target, {1: 0}, components=("backbone", "class_head"))
    assert list(transfer.loaded) == ["backbone", "classification_head hidden layers"]
    assert transfer.new_classes == [0, 2]
    for a, b in zip(target.backbone.weights, source.backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for component, weights in before.items():
        for weight, value in zip(getattr(target, component).weights, weights):
            np.testing.assert_array_equal(weight.numpy(), value)
    with pytest.raises(ValueError, match="class_rows are rows of the class subnet"):
        transfer_weights(source, target, {1: 0}, components=("backbone",))
    with pytest.raises(ValueError, match=r"components must be names of .*got \['head'\]"):
        transfer_weights(source, target, {}, components=("head",))


@pytest.mark.slow  # trains a step: about half a minute on 2 cores
def test_training_from_a_backbone_alone_keeps_its_frozen_statistics(source_file, tmp_path):
    """`train`'s route: the components taken from the config, the report's fourth line, frozen batch norm's
    weights the source's batch norm's after a step (the convolutions train)."""
    path = tiny_experiment_file(tmp_path, iterations=1, warmup_iterations=0,
                                model_yaml=f"  init_from: {source_file}\n  init_components: [backbone]\n")
    overrides = ["model.backbone.normalization=frozen_bn"]
    model = train(load_config(str(path), overrides), str(tmp_path / "run"), verbose=0,
                  given=given_settings(str(path), overrides))
    assert model.metadata["init_from"]["fresh"] == "pyramid, box_head, class_head"
    notes = (tmp_path / "run" / "config.yaml").read_text().splitlines()[:4]
    assert notes[1:] == ["# class rows matched by name: none",
                         "# classes initialised anew (prior probability): circle, square, triangle, cross",
                         "# components initialised anew (model.init_components leaves them out): pyramid, box_head, "
                         "class_head"]
    source = read_source(source_file).model.backbone
    norms = {layer.name: layer for layer in source.layers if isinstance(layer, keras.layers.BatchNormalization)}
    frozen = [layer for layer in model.backbone.layers if isinstance(layer, FrozenBatchNormalization)]
    assert frozen and len(frozen) == len(norms)
    for layer in frozen:
        for mine, theirs in zip(layer.get_weights(), norms[layer.name].get_weights()):
            np.testing.assert_array_equal(mine, theirs)
    convs = [(a.numpy(), b.numpy()) for a, b in zip(model.backbone.weights, source.weights) if "kernel" in a.path]
    assert convs and any(not np.array_equal(a, b) for a, b in convs)
