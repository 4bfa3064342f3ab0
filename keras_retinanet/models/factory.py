"""A `RetinaNet` from a `keras_retinanet.config.ModelConfig`: each config section is its component's arguments."""

from keras_retinanet.backbones import BACKBONES
from keras_retinanet.config import to_dict
from keras_retinanet.boxes import Matcher
from keras_retinanet.layers import AnchorGenerator, DetectionDecoder, FeaturePyramid, RetinaNetHead
from keras_retinanet.losses import BOX_LOSSES, CLASSIFICATION_LOSSES, SmoothL1Loss
from keras_retinanet.models.retinanet import RetinaNet


def build_anchor_generator(config):
    """The `AnchorGenerator` an `AnchorConfig` describes, for the levels the `FeaturePyramid` produces."""
    return AnchorGenerator(min_level=FeaturePyramid.min_level, max_level=FeaturePyramid.max_level,
                           **config.generator_arguments())


def build_matcher(config):
    """The `Matcher` a `MatcherConfig` describes."""
    return Matcher(**vars(config))


def build_detector(experiment, class_names, category_ids):
    """The detector of `experiment` (an `ExperimentConfig`) for the classes `class_names` (dataset ids
    `category_ids`), its metadata holding them and the whole config: what `bin/train` saves and serving reads."""
    model = build_retinanet(experiment.model, len(class_names))
    model.metadata = {"class_names": list(class_names), "category_ids": [int(i) for i in category_ids],
                      "config": to_dict(experiment)}
    return model


def build_retinanet(config, num_classes):
    """The detector `config` (a `ModelConfig`) describes, for `num_classes` classes."""
    anchor_generator = build_anchor_generator(config.anchors)
    heads = config.heads
    head_settings = dict(
        num_anchors=anchor_generator.num_anchors_per_location,
        filters=heads.filters,
        num_convs=heads.num_convs,
        normalization=heads.normalization,
        separable=heads.separable,
        use_bias=heads.normalization is None,  # a bias before a normalisation does nothing
    )
    box_loss, classification_loss = config.box_loss, config.classification_loss
    return RetinaNet(
        backbone=BACKBONES[config.backbone.type](**config.backbone.arguments()),
        num_classes=num_classes,
        feature_pyramid=FeaturePyramid(**vars(config.pyramid), name="feature_pyramid"),
        classification_head=RetinaNetHead(
            num_classes, prior_probability=heads.prior_probability, name="classification_head", **head_settings
        ),
        box_head=RetinaNetHead(4, name="box_head", **head_settings),
        anchor_generator=anchor_generator,
        matcher=build_matcher(config.matcher),
        decoder=DetectionDecoder(**vars(config.decoder)),
        classification_loss=CLASSIFICATION_LOSSES[classification_loss.type](**classification_loss.arguments()),
        box_loss=SmoothL1Loss(box_loss.beta) if box_loss.type == "smooth_l1" else BOX_LOSSES[box_loss.type](),
        box_loss_weight=config.box_loss_weight,
        ignore_region_threshold=config.ignore_region_threshold,
    )
