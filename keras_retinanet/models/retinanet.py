"""The RetinaNet detector: one Keras model for training (`fit`), inference (`predict`) and saving."""

import keras
import tensorflow as tf

# The formats `keras.utils.bounding_boxes.convert_format` takes. Keras 3 exports no public name for its list, so it
# is read from the module that keeps it (and checks against it), rather than copied.
from keras.src.layers.preprocessing.image_preprocessing.bounding_boxes.bounding_box import (
    SUPPORTED_FORMATS as BOX_FORMATS,
)

from keras_retinanet.boxes import AnchorLabeler, BoxCoder, Matcher
from keras_retinanet.deprecation import renamed_argument
from keras_retinanet.layers import AnchorGenerator, DetectionDecoder, FeaturePyramid, RetinaNetHead
from keras_retinanet.losses import FocalLoss, SmoothL1Loss
from keras_retinanet.losses.normalized import global_sum
from keras_retinanet.precision import dtype_policy_scope


@keras.saving.register_keras_serializable(package="keras_retinanet")
class RetinaNet(keras.Model):
    """RetinaNet (Lin et al., ICCV 2017): backbone + FPN (P3-P7) + class and box subnets over 9 anchors a location.

    Calling the model on images [B, H, W, 3] (RGB pixel values in [0, 255], H and W best multiples of 128) gives
    `{"class_logits": [B, N, K], "box_deltas": [B, N, 4]}` for the N anchors of the `anchor_generator`, in its order.

    `fit` takes the images with raw targets `{"boxes": [B, M, 4], "labels": [B, M]}`: boxes in
    `bounding_box_format`, pixel coordinates of the input image, and integer labels in [0, num_classes) padded
    with -1 (`GroundTruth.PADDING`; an image may have no box at all). A row labelled -2
    (`GroundTruth.IGNORE_REGION`) is an ignore region, such as a COCO crowd box:
    anchors mostly inside it are neither foreground nor background. The model labels its anchors itself in
    `compute_loss`, on the device and vectorised, so targets can never disagree with the anchors the model uses.

    `predict` returns decoded detections `{"boxes", "scores", "classes", "num_detections"}` (boxes in
    `bounding_box_format`), per the `decoder`'s settings. It also takes `{"images", "content_sizes"}`,
    `content_sizes` [B, 2] being the height and width of each image inside its padding: boxes are then clipped to
    the image, not to its padding, before NMS (needed for torchvision's detections exactly).

    Every setting (anchors, box coding, matching, losses, inference) is a constructor argument and part of
    `get_config`, so a saved `.keras` model carries them.

    Args:
        backbone: a `keras.Model` mapping images to [C3, C4, C5] (e.g. `keras_retinanet.backbones.ResNetBackbone`).
        num_classes: number of object classes K (no background class).
        feature_pyramid: a `FeaturePyramid` (default: the paper's, 256 channels, P6 from C5).
        classification_head, box_head: `RetinaNetHead`s (default: the paper's, prior probability 0.01).
        anchor_generator: an `AnchorGenerator` over levels 3-7 (default: the paper's 9 anchors a location).
        box_coder: a `BoxCoder` (default: weights 1, clamp log(1000/16)).
        matcher: a `Matcher` (default: 0.5 / 0.4 with low-quality matches).
        decoder: a `DetectionDecoder` (default: score 0.05, top 1000 a level, NMS 0.5, 100 detections).
        classification_loss: default `FocalLoss(alpha=0.25, gamma=2)`; `FocalLossStar` and `OHEMLoss` work too.
        box_loss: default `SmoothL1Loss(beta=0.11)`; `L1Loss` and `GIoULoss` work too.
        box_loss_weight: weight of the box loss in the total.
        bounding_box_format: format of the boxes given to `fit` and returned by `predict` (a
            `keras.utils.bounding_boxes` format: "xyxy", "yxyx", "xywh", "center_xywh", "rel_xyxy", ...).
        metadata: a JSON-serialisable dict saved with the model, e.g. the label map and the experiment config that
            `bin/train` records, so that a saved model carries what its users need.
    """

    def __init__(
        self,
        backbone,
        num_classes,
        feature_pyramid=None,
        classification_head=None,
        box_head=None,
        anchor_generator=None,
        box_coder=None,
        matcher=None,
        decoder=None,
        classification_loss=None,
        box_loss=None,
        box_loss_weight=1.0,
        ignore_region_threshold=0.5,
        bounding_box_format="xyxy",
        metadata=None,
        **kwargs,
    ):
        if num_classes < 1:
            raise ValueError(f"RetinaNet num_classes must be >= 1, got {num_classes}")
        if bounding_box_format not in BOX_FORMATS:
            raise ValueError(f"RetinaNet bounding_box_format must be one of {BOX_FORMATS}, got {bounding_box_format!r}")
        anchor_generator = anchor_generator or AnchorGenerator()
        num_anchors = anchor_generator.num_anchors_per_location
        feature_pyramid = feature_pyramid or FeaturePyramid(name="feature_pyramid")
        classification_head = classification_head or RetinaNetHead(
            num_classes, num_anchors=num_anchors, prior_probability=0.01, name="classification_head"
        )
        box_head = box_head or RetinaNetHead(4, num_anchors=num_anchors, name="box_head")
        _check_components(num_classes, feature_pyramid, anchor_generator, classification_head, box_head)

        images = keras.Input(shape=(None, None, 3), name="images")
        pyramid = feature_pyramid(backbone(images))
        outputs = {"class_logits": classification_head(pyramid), "box_deltas": box_head(pyramid)}
        super().__init__(inputs=images, outputs=outputs, **kwargs)

        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.feature_pyramid = feature_pyramid
        self.classification_head = classification_head
        self.box_head = box_head
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder or BoxCoder()
        self.matcher = matcher or Matcher()
        self.ignore_region_threshold = float(ignore_region_threshold)
        self.labeler = AnchorLabeler(self.matcher, self.box_coder, self.ignore_region_threshold)
        self.decoder = decoder or DetectionDecoder()
        self.classification_loss = classification_loss or FocalLoss()
        self.box_loss = box_loss or SmoothL1Loss()
        self.box_loss_weight = float(box_loss_weight)
        self.bounding_box_format = bounding_box_format
        self.metadata = dict(metadata or {})
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.classification_loss_tracker = keras.metrics.Mean(name="classification_loss")
        self.box_loss_tracker = keras.metrics.Mean(name="box_loss")
        self.regularization_loss_tracker = keras.metrics.Mean(name="regularization_loss")
        self._gradient_norms = None  # a GradientNormTrackers where compile asks for them

    def compile(self, optimizer="rmsprop", loss=None, gradient_norms=False, **kwargs):
        """As `keras.Model.compile`, without `loss`: RetinaNet's losses are its constructor arguments.

        `gradient_norms=True` makes each training step also log the global norm of its gradient before clipping,
        in all (`gradient_norm`) and per loss term (`classification_gradient_norm`; `box_gradient_norm`, which
        includes any regularization losses), and, where the optimizer clips by `global_clipnorm`, the share of
        steps it clipped (`clipped`): running means over the epoch, as Keras logs its metrics. It costs a second
        backward pass a step (each term's gradient is computed on its own)."""
        if loss is not None:
            raise ValueError(
                "RetinaNet.compile takes no `loss`: pass `classification_loss=` / `box_loss=` to the constructor"
            )
        super().compile(optimizer=optimizer, **kwargs)
        self._gradient_norms = GradientNormTrackers(_global_clipnorm(self.optimizer)) if gradient_norms else None

    @property
    def metrics(self):
        """Keras' metrics, with the gradient-norm trackers where `compile(gradient_norms=True)` asked for them
        (held outside Keras' attribute tracking, so that saved models do not change with them)."""
        gradient_norms = getattr(self, "_gradient_norms", None)
        return [*super().metrics, *(gradient_norms.trackers if gradient_norms else ())]

    def train_step(self, data):
        """Keras' step; with gradient norms asked for, the same update from the loss terms' gradients summed,
        their norms recorded first."""
        if self._gradient_norms is None:
            return super().train_step(data)
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        with tf.GradientTape(persistent=True) as tape:
            y_pred = self(x, training=True)
            terms = self._loss_terms(x, y, y_pred, sample_weight)
            classification = self.optimizer.scale_loss(terms["classification"])
            rest = self.optimizer.scale_loss(terms["box"] + terms["regularization"])
        weights = self.trainable_weights
        classification_gradients = _zeros_where_none(tape.gradient(classification, weights), weights)
        rest_gradients = _zeros_where_none(tape.gradient(rest, weights), weights)
        del tape
        gradients = [a + b for a, b in zip(classification_gradients, rest_gradients)]
        self._gradient_norms.update_state(classification_gradients, rest_gradients, gradients,
                                          _loss_scale(self.optimizer))
        self.optimizer.apply_gradients(zip(gradients, weights))
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def compile_from_config(self, config):
        """Compiles a loaded model as it was saved (Keras skips this for models that override `compile`)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    def label_anchors(self, images, y):
        """(anchors [N, 4] `xyxy` of the batch `images`' size, the `AnchorLabeler` targets of the raw targets
        `y = {"boxes", "labels"}` against them): what `compute_loss` trains on."""
        image_size = tf.shape(images)[1:3]
        labels = tf.cast(y["labels"], tf.int32)
        tf.debugging.assert_less(labels, self.num_classes, message="RetinaNet: a label is >= num_classes")
        anchors = self.anchor_generator(image_size)
        return anchors, self.labeler(anchors, self._to_xyxy(y["boxes"], image_size), labels)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """Classification loss + weighted box loss, from raw targets `y = {"boxes", "labels"}` labelled against the
        anchors."""
        terms = self._loss_terms(x, y, y_pred, sample_weight)
        return terms["classification"] + terms["box"] + terms["regularization"]

    def _loss_terms(self, x, y, y_pred, sample_weight):
        """{"classification", "box" (weighted), "regularization"}: this replica's shares of the loss's terms,
        recorded by the loss trackers."""
        anchors, targets = self.label_anchors(x, y)

        anchor_weights = None
        if sample_weight is not None:  # one weight per image
            anchor_weights = tf.broadcast_to(tf.cast(sample_weight, tf.float32)[:, None],
                                             tf.shape(targets["class_targets"]))
        classification_loss = self.classification_loss(
            targets["class_targets"], y_pred["class_logits"], sample_weight=anchor_weights,
            anchors=anchors if self.classification_loss.needs_anchors else None,
        )

        positive = tf.cast(targets["class_targets"] >= 0, tf.float32)
        if anchor_weights is not None:
            positive *= anchor_weights
        if self.box_loss.target_space == "boxes":
            box_true = targets["matched_boxes"]
            box_pred = self.box_coder.decode(y_pred["box_deltas"], anchors[None])
        else:
            box_true, box_pred = targets["box_targets"], y_pred["box_deltas"]
        box_loss = self.box_loss(box_true, box_pred, sample_weight=positive)

        total = classification_loss + self.box_loss_weight * box_loss
        regularization = tf.constant(0.0)
        if self.losses:
            num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
            regularization = tf.add_n([tf.cast(loss, tf.float32) for loss in self.losses]) / num_replicas
            total += regularization
        # Each replica returns its share of the global loss (see PositiveNormalizedLoss); the trackers record the
        # whole, summed over replicas, so that every replica reports the same, exact figures.
        for tracker, share in (
            (self.total_loss_tracker, total),
            (self.classification_loss_tracker, classification_loss),
            (self.box_loss_tracker, box_loss),
            (self.regularization_loss_tracker, regularization),
        ):
            tracker.update_state(global_sum(share))
        return {"classification": classification_loss, "box": self.box_loss_weight * box_loss,
                "regularization": regularization}

    def get_metrics_result(self):
        """Keras' metrics, with `loss` from the global total: under a distribution strategy Keras' own loss
        tracker would report the first replica's share scaled up, not the loss of the whole batch."""
        results = super().get_metrics_result()
        results["loss"] = results.pop("total_loss")
        if _in_multi_worker_replica():
            # keras-team/keras#20585: under MultiWorkerMirroredStrategy Keras reduces each logged value across
            # workers with reduce("MEAN", axis=0), which fails on scalars; the values are global (the same on every
            # replica), so a [1] vector reduces to the same number.
            results = {name: tf.reshape(value, [1]) for name, value in results.items()}
        return results

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        """Keras' build from the first batch. keras-team/keras#20585: under MultiWorkerMirroredStrategy Keras
        averages that whole batch across workers to learn its shapes, which fails (a per-replica value cannot become
        a tensor there); this replica's part of the batch has the shapes it needs."""
        strategy = self.distribute_strategy
        if iterator is not None and isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            for _, _, batches in iterator:
                data_batch = tf.nest.map_structure(lambda value: strategy.experimental_local_results(value)[0],
                                                   next(batches))
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def make_predict_function(self, force=False):
        """Keras' predict function, run by TensorFlow's kernels even when the model is compiled with XLA.

        XLA on CPU sorts the whole (anchor, class) score array for each level's top-k: decoding took 14x longer and
        the whole predict step about 35% longer than without XLA (ResNet-50, 320 px, `bin/benchmark`).
        """
        jit_compile = self.jit_compile
        self.jit_compile = False
        try:
            return super().make_predict_function(force)
        finally:
            self.jit_compile = jit_compile

    def predict_step(self, data):
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        if isinstance(x, dict):
            content_sizes = renamed_argument("RetinaNet.predict", "content_sizes", x.get("content_sizes"),
                                             "image_sizes", x.get("image_sizes"))
            return self.decode_predictions(self(x["images"], training=False), tf.shape(x["images"])[1:3],
                                           content_sizes)
        return self.decode_predictions(self(x, training=False), tf.shape(x)[1:3])

    def decode_predictions(self, predictions, padded_size=None, content_sizes=None, decoder=None, *,
                           image_size=None, image_sizes=None):
        """Detections from the model's raw outputs for network inputs of `padded_size` [height, width].

        `content_sizes` [B, 2], if given, is the size of each image inside its padding: boxes are clipped to it
        before NMS (as torchvision and detectron2 do), not to the padded size. `decoder`: a `DetectionDecoder`
        with other settings than the model's own `decoder`. (`image_size` and `image_sizes` are the old names of
        `padded_size` and `content_sizes`.)
        """
        where = "RetinaNet.decode_predictions"
        padded_size = renamed_argument(where, "padded_size", padded_size, "image_size", image_size)
        content_sizes = renamed_argument(where, "content_sizes", content_sizes, "image_sizes", image_sizes)
        anchors = self.anchor_generator(padded_size)
        boxes = self.box_coder.decode(predictions["box_deltas"], anchors[None])
        detections = (decoder or self.decoder)(
            predictions["class_logits"],
            boxes,
            level_anchor_counts=self.anchor_generator.level_anchor_counts(padded_size),
            content_size=padded_size if content_sizes is None else content_sizes,
        )
        detections["boxes"] = self._from_xyxy(detections["boxes"], padded_size)
        return detections

    def _to_xyxy(self, boxes, image_size):
        boxes = tf.cast(boxes, tf.float32)
        if self.bounding_box_format == "xyxy":
            return boxes
        return keras.utils.bounding_boxes.convert_format(
            boxes, self.bounding_box_format, "xyxy", height=image_size[0], width=image_size[1]
        )

    def _from_xyxy(self, boxes, image_size):
        if self.bounding_box_format == "xyxy":
            return boxes
        return keras.utils.bounding_boxes.convert_format(
            boxes, "xyxy", self.bounding_box_format, height=image_size[0], width=image_size[1]
        )

    def get_config(self):
        serialize = keras.saving.serialize_keras_object
        return {
            "name": self.name,
            "trainable": self.trainable,
            "backbone": serialize(self.backbone),
            "num_classes": self.num_classes,
            "feature_pyramid": serialize(self.feature_pyramid),
            "classification_head": serialize(self.classification_head),
            "box_head": serialize(self.box_head),
            "anchor_generator": serialize(self.anchor_generator),
            "box_coder": serialize(self.box_coder),
            "matcher": serialize(self.matcher),
            "decoder": serialize(self.decoder),
            "classification_loss": serialize(self.classification_loss),
            "box_loss": serialize(self.box_loss),
            "box_loss_weight": self.box_loss_weight,
            "ignore_region_threshold": self.ignore_region_threshold,
            "bounding_box_format": self.bounding_box_format,
            "metadata": self.metadata,
            "dtype_policy": self.dtype_policy.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        with dtype_policy_scope(config.pop("dtype_policy", None)):  # e.g. mixed_float16 decides the loss scaling
            for key in ("backbone", "feature_pyramid", "classification_head", "box_head", "anchor_generator",
                        "box_coder", "matcher", "decoder", "classification_loss", "box_loss"):
                config[key] = keras.saving.deserialize_keras_object(config[key])
            return cls(**config)


def _check_components(num_classes, feature_pyramid, anchor_generator, classification_head, box_head):
    """Errors that name the mismatch, instead of a shape error deep inside training."""
    pyramid_levels = (feature_pyramid.min_level, feature_pyramid.max_level)
    if (anchor_generator.min_level, anchor_generator.max_level) != pyramid_levels:
        raise ValueError(
            "RetinaNet's feature_pyramid has levels {}-{}; the anchor_generator has levels {}-{}".format(
                *pyramid_levels, anchor_generator.min_level, anchor_generator.max_level
            )
        )
    num_anchors = anchor_generator.num_anchors_per_location
    for head, outputs, what in ((classification_head, num_classes, "num_classes"), (box_head, 4, "4 box deltas")):
        if head.outputs_per_anchor != outputs or head.num_anchors != num_anchors:
            raise ValueError(
                f"RetinaNet head '{head.name}' has outputs_per_anchor={head.outputs_per_anchor}, "
                f"num_anchors={head.num_anchors}; expected {outputs} ({what}) and {num_anchors} "
                "(the anchor_generator's anchors per location)"
            )


def _in_multi_worker_replica():
    return (isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy)
            and not tf.distribute.in_cross_replica_context())


class GradientNormTrackers:
    """Running means of a step's gradient norms before clipping (in all and per loss term) and of whether the
    optimizer's `global_clipnorm` (`clip_norm`; None: no clipping, nothing counted) clipped it. A plain object, not
    a Keras layer: `RetinaNet.metrics` lists its trackers, saving does not see them."""

    def __init__(self, clip_norm):
        self.clip_norm = clip_norm
        self.total = keras.metrics.Mean(name="gradient_norm")
        self.classification = keras.metrics.Mean(name="classification_gradient_norm")
        self.box = keras.metrics.Mean(name="box_gradient_norm")
        self.clipped = keras.metrics.Mean(name="clipped") if clip_norm else None
        self.trackers = tuple(tracker for tracker in (self.total, self.classification, self.box, self.clipped)
                              if tracker is not None)

    def update_state(self, classification_gradients, box_gradients, gradients, loss_scale):
        """Records one step's gradients (this replica's shares, of the loss scaled by `loss_scale`)."""
        norms = [tf.linalg.global_norm(_summed_over_replicas(grads)) / loss_scale
                 for grads in (classification_gradients, box_gradients, gradients)]
        for tracker, norm in zip((self.classification, self.box, self.total), norms):
            tracker.update_state(norm)
        if self.clipped is not None:
            self.clipped.update_state(tf.cast(norms[2] > self.clip_norm, tf.float32))


def _summed_over_replicas(gradients):
    """The whole batch's gradients from each replica's share (the optimizer sums them the same way)."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return gradients
    return context.all_reduce("SUM", gradients)


def _zeros_where_none(gradients, weights):
    """A loss term's gradients, zeros for the weights it does not reach (the other head's)."""
    return [tf.zeros(weight.shape, weight.dtype) if gradient is None else gradient
            for gradient, weight in zip(gradients, weights)]


def _global_clipnorm(optimizer):
    return getattr(getattr(optimizer, "inner_optimizer", optimizer), "global_clipnorm", None)


def _loss_scale(optimizer):
    """The factor `optimizer.scale_loss` multiplies the loss by (a `LossScaleOptimizer`'s dynamic scale)."""
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return tf.cast(optimizer.dynamic_scale, tf.float32)
    return 1.0

