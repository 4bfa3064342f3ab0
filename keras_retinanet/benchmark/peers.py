"""The peers, built as their libraries build a ResNet-50 RetinaNet and timed on the same inputs as ours.

torchvision: `RetinaNet` over `_resnet_fpn_extractor` with frozen batch norm and the first two stages frozen, as
`retinanet_resnet50_fpn` builds it around a pretrained backbone (with `weights_backbone=None` it would switch to
trainable BatchNorm), resizing set to keep the benchmark's image size. KerasHub: `RetinaNetObjectDetector` over its
ResNet-50 (the `resnet_50_imagenet` preset's architecture) with P3-P7 and 9 anchors a location.
"""

import importlib.util

from keras_retinanet.benchmark.inputs import random_images, random_targets
from keras_retinanet.benchmark.timing import median_seconds

PEERS = ("torchvision", "keras_hub")


def installed(peer):
    return importlib.util.find_spec(peer) is not None


def _torchvision_detector(setting):
    import torch
    from torchvision.models import resnet50
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
    from torchvision.ops import FrozenBatchNorm2d
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    if setting.depth != 50:
        raise ValueError("the torchvision peer is timed with ResNet-50 only")
    torch.manual_seed(0)
    backbone = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3, returned_layers=[2, 3, 4],
                                     extra_blocks=LastLevelP6P7(256, 256))
    return RetinaNet(backbone, setting.num_classes, min_size=setting.image_size, max_size=setting.image_size)


def _torch_images(setting, batch_size):
    import torch

    images = random_images(batch_size, setting.image_size) / 255.0
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _autocast(dtype):
    import contextlib

    import torch

    if dtype == "bfloat16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def torchvision_forward(setting, dtype):
    """Backbone + FPN + heads on normalised images, under autocast for bfloat16."""
    import torch

    model = _torchvision_detector(setting).eval()
    images = model.transform.normalize(_torch_images(setting, setting.batch_size))

    def network():
        with torch.inference_mode(), _autocast(dtype):
            features = list(model.backbone(images).values())
            return model.head(features)

    return {"seconds": median_seconds(network, setting.repeats)}


def torchvision_predict(setting, dtype):
    """`model(images)` in eval mode: transform, network, decoding, per-level top-k, batched NMS."""
    import torch

    model = _torchvision_detector(setting).eval()
    images = list(_torch_images(setting, setting.batch_size))

    def predict():
        with torch.inference_mode(), _autocast(dtype):
            return model(images)

    return {"seconds": median_seconds(predict, setting.repeats)}


def torchvision_train(setting, dtype):
    """One SGD step: `model(images, targets)` losses, backward, update."""
    import torch

    model = _torchvision_detector(setting).train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    images = list(_torch_images(setting, setting.train_batch_size))
    boxes, labels = random_targets(setting.train_batch_size, setting.max_boxes, setting.image_size,
                                   setting.num_classes)
    targets = [
        {"boxes": torch.from_numpy(image_boxes[image_labels >= 0]),
         "labels": torch.from_numpy(image_labels[image_labels >= 0]).long()}
        for image_boxes, image_labels in zip(boxes, labels)
    ]

    def step():
        optimizer.zero_grad()
        with _autocast(dtype):
            losses = model(images, targets)
        sum(losses.values()).backward()
        optimizer.step()

    return {"seconds": median_seconds(step, setting.repeats)}


def _keras_hub_detector(setting, dtype, jit_compile=False):
    import keras
    from keras_hub.layers import AnchorGenerator
    from keras_hub.models import ResNetBackbone, RetinaNetBackbone, RetinaNetObjectDetector

    if setting.depth != 50:
        raise ValueError("the KerasHub peer is timed with ResNet-50 only")
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if dtype == "bfloat16" else "float32")
    keras.utils.set_random_seed(0)
    resnet = ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[7], stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[3, 4, 6, 3], stackwise_num_strides=[1, 2, 2, 2], block_type="bottleneck_block",
    )
    detector = RetinaNetObjectDetector(
        backbone=RetinaNetBackbone(image_encoder=resnet, min_level=3, max_level=7, use_p5=False),
        num_classes=setting.num_classes,
        anchor_generator=AnchorGenerator(bounding_box_format="yxyx", min_level=3, max_level=7, num_scales=3,
                                         aspect_ratios=[0.5, 1.0, 2.0], anchor_size=4),
    )
    detector.compile(jit_compile=jit_compile)
    return detector


def keras_hub_forward(setting, dtype):
    import tensorflow as tf

    detector = _keras_hub_detector(setting, dtype)
    images = random_images(setting.batch_size, setting.image_size)
    network = tf.function(lambda x: detector(x, training=False))
    return {"seconds": median_seconds(lambda: network(images)["cls_logits"].numpy(), setting.repeats)}


def keras_hub_predict(setting, dtype, jit_compile):
    """`predict` (its `predict_on_batch` cannot unpack a bare batch in KerasHub 0.32)."""
    detector = _keras_hub_detector(setting, dtype, jit_compile)
    images = random_images(setting.batch_size, setting.image_size)
    batch = setting.batch_size
    return {"seconds": median_seconds(lambda: detector.predict(images, batch_size=batch, verbose=0),
                                      setting.repeats)}
