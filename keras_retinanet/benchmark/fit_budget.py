"""Accuracy per CPU-minute: our detector and torchvision's RetinaNet trained for the same wall-clock budget on the
same data, then evaluated by the same COCO code.

Ours trains as `bin/train` does from an experiment file (its `data.train` and `data.val` are the data, its
`data.min_size` / `max_size` the image size of both), stopped when the budget is spent if its
`train.iterations` are not done by then. The peer is torchvision's `RetinaNet` over a ResNet-`peer_depth` FPN
(P3-P7, trainable BatchNorm: from scratch, as ours here) with torchvision's own resizing to the same sizes, a
horizontal flip with probability 0.5, SGD with the experiment's learning rate, momentum, weight decay, linear
warm-up and gradient clipping, the rate multiplied by `train.lr_decay` at 2/3 and 8/9 of the budget (its step
count is not known in advance), the same batch size and thread count. The budget of each counts from its first
training step, so that compiling (XLA for us) and the input pipeline count, and reading the annotations and
building the model do not. Each side runs in its own process.
"""

import dataclasses
import os
import time

import numpy as np

from keras_retinanet.benchmark.report import row
from keras_retinanet.benchmark.timing import run_isolated

PEER_DECAYS = (2 / 3, 8 / 9)  # of the budget, as the 1x schedule's steps are of its iterations


@dataclasses.dataclass(frozen=True)
class FitBudget:
    """One comparison: the experiment file `config` under the `overrides` (dotted.key=value), `minutes` of
    training for each, the peer's ResNet depth."""

    config: str
    minutes: float = 10.0
    peer_depth: int = 18
    overrides: tuple = ()


def compare(budget):
    """{"ours": figures, "torchvision": figures}, each {"AP", "AP50", "per_class_AP", "iterations",
    "train_seconds", "images_per_second"} (or {"error"}), each side trained in a fresh process."""
    seconds = budget.minutes * 60.0
    return {
        "ours": run_isolated(train_ours, budget.config, seconds, budget.overrides),
        "torchvision": run_isolated(train_torchvision, budget.config, seconds, budget.peer_depth, budget.overrides,
                                    preload=("torch", "torchvision")),
    }


def rows(comparison, budget):
    """`bin/benchmark`'s rows (`report.row`) of a `compare` result: AP, AP50, each class's AP, iterations done and
    images/s, ours beside torchvision's."""
    ours, peer = comparison["ours"], comparison["torchvision"]
    settings = " ".join([budget.config, *budget.overrides])
    where = f"after {budget.minutes:g} min of training on {budget.config}'s data"
    note = f"ours: {settings}; torchvision: RetinaNet ResNet-{budget.peer_depth}-FPN from scratch"
    if "error" in ours or "error" in peer:
        return [row(f"AP {where}", ours if "error" in ours else ours["AP"], unit="AP",
                    peers={"torchvision": peer if "error" in peer else peer["AP"]}, note=note)]
    lines = [row(f"{metric} {where}", ours[metric], unit="AP", peers={"torchvision": peer[metric]}, note=note)
             for metric in ("AP", "AP50")]
    lines += [row(f"AP of {name} {where}", ap, unit="AP", peers={"torchvision": peer["per_class_AP"].get(name)})
              for name, ap in ours["per_class_AP"].items()]
    lines.append(row(f"training iterations {where}", ours["iterations"], unit="iterations",
                     peers={"torchvision": peer["iterations"]}, note=f"batches of {budget.config}'s batch size"))
    lines.append(row("training images/s of the same run", ours["images_per_second"], unit="images/s",
                     peers={"torchvision": peer["images_per_second"]}))
    return lines


class _Budget:
    """Wall-clock budget from the first training step on."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.start = None

    def begin(self):
        if self.start is None:
            self.start = time.perf_counter()

    def elapsed(self):
        return 0.0 if self.start is None else time.perf_counter() - self.start

    def spent(self):
        return self.elapsed() >= self.seconds


def train_ours(config_path, seconds, overrides=()):
    """Trains the experiment `config_path` (under `overrides`) for at most `seconds` (no periodic evaluation) and
    evaluates it on its `data.val`: the figures of `compare`."""
    import tempfile

    import keras

    from keras_retinanet.config import SplitConfig, load_config
    from keras_retinanet.data.splits import read_split
    from keras_retinanet.evaluation import evaluate_model
    from keras_retinanet.training import train

    budget = _Budget(seconds)

    class StopAtBudget(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            budget.begin()

        def on_train_batch_end(self, batch, logs=None):
            self.model.stop_training = budget.spent()

    config = load_config(config_path, overrides)
    training = dataclasses.replace(config, data=dataclasses.replace(config.data, val=SplitConfig()))
    with tempfile.TemporaryDirectory() as model_dir:
        model = train(training, model_dir, verbose=0, callbacks=[StopAtBudget()])
    iterations = int(model.optimizer.iterations.numpy())
    train_seconds = budget.elapsed()
    evaluation, _ = evaluate_model(model, read_split(config.data.val, config.data), config.data,
                                   config.train.batch_size)
    return _figures(evaluation, iterations, train_seconds, config.train.batch_size)


def train_torchvision(config_path, seconds, depth, overrides=()):
    """torchvision's RetinaNet trained on the experiment's data (`config_path` under `overrides`) for `seconds` and
    evaluated on its `data.val`."""
    import torch

    from keras_retinanet.config import load_config
    from keras_retinanet.data.splits import read_split

    torch.manual_seed(0)
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    config = load_config(config_path, overrides)
    train_set, val_set = read_split(config.data.train, config.data), read_split(config.data.val, config.data)
    model = _peer_model(depth, train_set.num_classes, config.data.min_size, config.data.max_size)
    budget = _Budget(seconds)
    iterations = _train_peer(model, train_set, config, budget)
    train_seconds = budget.elapsed()
    evaluation = _evaluate_peer(model, val_set, config.data.max_image_pixels)
    return _figures(evaluation, iterations, train_seconds, config.train.batch_size)


def _peer_model(depth, num_classes, min_size, max_size):
    import torch
    from torchvision.models.detection import RetinaNet
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.ops.feature_pyramid_network import LastLevelP6P7

    backbone = resnet_fpn_backbone(backbone_name=f"resnet{depth}", weights=None, norm_layer=torch.nn.BatchNorm2d,
                                   trainable_layers=5, returned_layers=[2, 3, 4],
                                   extra_blocks=LastLevelP6P7(256, 256))
    return RetinaNet(backbone, num_classes, min_size=min_size, max_size=max_size)


def _train_peer(model, dataset, config, budget):
    """SGD steps on shuffled, flipped batches of `dataset` until `budget` is spent; returns the step count."""
    import torch

    train_config = config.train
    images = [_torch_image(record.path, config.data.max_image_pixels) for record in dataset.records]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=train_config.learning_rate,
                                momentum=train_config.momentum, weight_decay=train_config.weight_decay)
    rng = np.random.default_rng(0)
    model.train()
    step, order = 0, []
    while not budget.spent():
        if len(order) < train_config.batch_size:
            order = list(rng.permutation(len(images)))
        batch = [order.pop() for _ in range(train_config.batch_size)]
        inputs, targets = zip(*(_flipped(images[i], dataset.records[i], rng.random() < 0.5) for i in batch))
        for group in optimizer.param_groups:
            group["lr"] = _peer_learning_rate(train_config, step, budget)
        budget.begin()
        losses = model(list(inputs), list(targets))
        optimizer.zero_grad()
        sum(losses.values()).backward()
        if train_config.clip_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train_config.clip_norm)
        optimizer.step()
        step += 1
    return step


def _peer_learning_rate(train_config, step, budget):
    rate = train_config.learning_rate
    if step < train_config.warmup_iterations:
        factor = train_config.warmup_factor
        rate *= factor + (1 - factor) * step / train_config.warmup_iterations
    return rate * train_config.lr_decay ** sum(budget.elapsed() >= share * budget.seconds for share in PEER_DECAYS)


def _torch_image(path, max_pixels):
    """The upright RGB image of `path` as torchvision's detectors take it: float [3, H, W] in 0-1."""
    import torch

    from keras_retinanet.export.litert_runner import read_image  # the pixels our pipeline decodes

    return torch.from_numpy(read_image(path, max_pixels).astype(np.float32) / 255.0).permute(2, 0, 1).contiguous()


def _flipped(image, record, flip):
    """(image, target) of `record`, mirrored left to right when `flip`."""
    import torch

    boxes = torch.as_tensor(np.array(record.boxes, np.float32).reshape(-1, 4))
    if flip:
        image = image.flip(-1)
        boxes = torch.stack([record.width - boxes[:, 2], boxes[:, 1], record.width - boxes[:, 0], boxes[:, 3]], 1)
    return image, {"boxes": boxes, "labels": torch.as_tensor(np.array(record.labels, np.int64))}


def _evaluate_peer(model, dataset, max_pixels):
    """COCO evaluation of the peer on `dataset` with our evaluation code."""
    import torch

    from keras_retinanet.evaluation.detector import batched_detections, evaluate_detections

    model.eval()
    per_image = []
    with torch.no_grad():
        for record in dataset.records:
            found = model([_torch_image(record.path, max_pixels)])[0]
            per_image.append({"boxes": found["boxes"].numpy(), "scores": found["scores"].numpy(),
                              "classes": found["labels"].numpy()})
    evaluation, _ = evaluate_detections(batched_detections(per_image), dataset)
    return evaluation


def _figures(evaluation, iterations, train_seconds, batch_size):
    return {
        "AP": evaluation.metrics["AP"], "AP50": evaluation.metrics["AP50"],
        "per_class_AP": dict(evaluation.per_class_ap), "iterations": iterations, "train_seconds": train_seconds,
        "images_per_second": iterations * batch_size / train_seconds if train_seconds else 0.0,
    }
