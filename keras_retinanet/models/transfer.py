"""Weights of one RetinaNet into another of the same architecture and other classes, and frozen components: the
model side of fine-tuning (the files and the config are `keras_retinanet.training.fine_tuning`'s)."""

import dataclasses

import numpy as np

# `train.freeze`'s names (`keras_retinanet.config.FREEZABLE`) -> the `RetinaNet` attribute holding that component.
COMPONENTS = {
    "backbone": "backbone",
    "pyramid": "feature_pyramid",
    "box_head": "box_head",
    "class_head": "classification_head",
}


def freeze(model, components):
    """Keeps the weights of `components` (names of `COMPONENTS`) as they are in training: `trainable = False`, the
    Keras way (a frozen `BatchNormalization` then also runs in inference mode). Call it before `compile`."""
    for component in components:
        getattr(model, COMPONENTS[component]).trainable = False


@dataclasses.dataclass
class Transfer:
    """What `transfer_weights` did: `loaded` {component: tensors copied}, `class_rows` {target class: source
    class} (the class subnet's output rows kept), `new_classes` (target classes left at the prior initialisation)."""

    loaded: dict
    class_rows: dict
    new_classes: list


def transfer_weights(source, target, class_rows, components=tuple(COMPONENTS)):
    """Copies the weights of `components` (names of `COMPONENTS`, default all) of `source` into `target` (two
    `RetinaNet`s of one architecture, any class counts): backbone, pyramid and box subnet whole; of the class subnet
    its hidden layers, and of its output layer the rows of each target class `t` in `class_rows` ({t: source
    class}) from the source's class. The other classes and components keep `target`'s initialisation (the class
    subnet's: the paper's prior). Returns a `Transfer`.

    Raises ValueError naming the first weight whose name or shape differs (the architectures are not one), an
    unknown component, or `class_rows` without the class subnet."""
    if not set(components) <= set(COMPONENTS):
        raise ValueError(f"components must be names of {tuple(COMPONENTS)}, got {list(components)}")
    if class_rows and "class_head" not in components:
        raise ValueError("class_rows are rows of the class subnet, which components leaves out")
    loaded = {}
    for component in ("backbone", "pyramid", "box_head"):
        if component in components:
            name = COMPONENTS[component]
            loaded[name] = _copy(getattr(source, name).weights, getattr(target, name).weights, name)
    if "class_head" in components:
        source_head, target_head = source.classification_head, target.classification_head
        hidden = [weight for layer in (*source_head.hidden_convs, *source_head.norms) for weight in layer.weights]
        loaded["classification_head hidden layers"] = _copy(
            hidden, [weight for layer in (*target_head.hidden_convs, *target_head.norms) for weight in layer.weights],
            "classification_head")
        _copy_class_rows(source_head.output_conv, target_head.output_conv, source.num_classes, target.num_classes,
                         class_rows)
    new_classes = [index for index in range(target.num_classes) if index not in class_rows]
    return Transfer(loaded, dict(class_rows), new_classes)


def _copy(sources, targets, component):
    if len(sources) != len(targets):
        raise ValueError(f"the {component} of the source has {len(sources)} weights, the model's {len(targets)}")
    for source, target in zip(sources, targets):
        if source.name != target.name or tuple(source.shape) != tuple(target.shape):
            raise ValueError(f"{component}: the source's weight {source.path} {list(source.shape)} does not fit "
                             f"{target.path} {list(target.shape)}")
        target.assign(np.asarray(source.numpy()))
    return len(targets)


def _copy_class_rows(source_conv, target_conv, source_classes, target_classes, class_rows):
    """The output channels of each matched class, for every anchor (channel = anchor * classes + class); a
    separable output conv's depthwise kernel, which every class shares, is copied whole."""
    num_anchors = target_conv.filters // target_classes
    source_kernel, target_kernel = _output_kernel(source_conv), _output_kernel(target_conv)
    same_kernel = source_kernel.shape[:3] == target_kernel.shape[:3] and type(source_conv) is type(target_conv)
    if source_conv.filters != num_anchors * source_classes or not same_kernel:
        raise ValueError(f"the source's class subnet output {list(source_kernel.shape)} does not fit "
                         f"{list(target_kernel.shape)} with {num_anchors} anchors per location")
    kernel, bias = target_kernel.numpy(), target_conv.bias.numpy()
    source_kernel, source_bias = source_kernel.numpy(), source_conv.bias.numpy()
    for target_class, source_class in class_rows.items():
        for anchor in range(num_anchors):
            to, of = anchor * target_classes + target_class, anchor * source_classes + source_class
            kernel[..., to], bias[to] = source_kernel[..., of], source_bias[of]
    target_kernel.assign(kernel)
    target_conv.bias.assign(bias)
    if hasattr(target_conv, "depthwise_kernel"):
        target_conv.depthwise_kernel.assign(source_conv.depthwise_kernel.numpy())


def _output_kernel(conv):
    """The kernel whose last axis is the conv's output channels: a separable conv's pointwise one."""
    return conv.pointwise_kernel if hasattr(conv, "pointwise_kernel") else conv.kernel
