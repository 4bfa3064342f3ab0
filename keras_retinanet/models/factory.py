"""A `RetinaNet` from a `keras_retinanet.config.ModelConfig`."""

from keras_retinanet.backbones import ResNetBackbone
from keras_retinanet.boxes import Matcher
from keras_retinanet.layers import AnchorGenerator, DetectionDecoder, FeaturePyramid, RetinaNetHead
from keras_retinanet.losses import FocalLoss, GIoULoss, L1Loss, SmoothL1Loss
from keras_retinanet.models.retinanet import RetinaNet


def build_anchor_generator(config):
    """The `AnchorGenerator` an `AnchorConfig` describes."""
    return AnchorGenerator(sizes=config.sizes, scales=config.scales, aspect_ratios=config.aspect_ratios, mode=config.mode)


def build_retinanet(config, num_classes):
    """The detector `config` (a `ModelConfig`) describes, for `num_classes` classes."""
    anchor_generator = build_anchor_generator(config.anchors)
    num_anchors = anchor_generator.num_anchors_per_location
    head_settings = dict(
        num_anchors=num_anchors,
        filters=config.head_filters,
        num_convs=config.head_convs,
        normalization=config.head_normalization,
        use_bias=config.head_normalization is None,
    )
    box_losses = {"smooth_l1": lambda: SmoothL1Loss(config.smooth_l1_beta), "l1": L1Loss, "giou": GIoULoss}
    return RetinaNet(
        backbone=ResNetBackbone(**vars(config.backbone)),
        num_classes=num_classes,
        feature_pyramid=FeaturePyramid(config.pyramid_filters, p6_input=config.p6_input, name="feature_pyramid"),
        classification_head=RetinaNetHead(
            num_classes, prior_probability=config.prior_probability, name="classification_head", **head_settings
        ),
        box_head=RetinaNetHead(4, name="box_head", **head_settings),
        anchor_generator=anchor_generator,
        matcher=Matcher(config.positive_threshold, config.negative_threshold, config.allow_low_quality_matches),
        decoder=DetectionDecoder(
            config.score_threshold, config.pre_nms_top_k, config.nms_iou_threshold, config.max_detections
        ),
        classification_loss=FocalLoss(alpha=config.focal_alpha, gamma=config.focal_gamma),
        box_loss=box_losses[config.box_loss](),
        box_loss_weight=config.box_loss_weight,
    )
