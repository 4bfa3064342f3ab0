"""Anchors fitted to a dataset's boxes, and the input size at which its small boxes can be matched at all.

`fit_anchors` searches the anchor `sizes` (one per pyramid level), `scales` and `aspect_ratios` of an
`InputGeometry`'s `AnchorGenerator`, their counts kept (the anchors per location, 9 by default, and with them the
head's shape), for the training boxes as the model sees them (resized per the data config, on their padded input's
anchor grid). It maximises the coverage (the share of boxes whose best anchor IoU reaches the matcher's
`positive_threshold`: boxes below it train only through the low-quality match), then the mean best IoU.

The search, as ultralytics' autoanchor does it: a start from the box shapes (aspect ratios at the quantiles of the
boxes', sizes doubling per level from the best of a grid of base sizes) and from the current anchors, then an
evolution that mutates every value by a random factor and keeps a mutation that scores better, on a seeded sample
of the boxes; the result is rounded, scored on every box, and kept only if it beats the current anchors there.
Deterministic under `seed`.

`propose_input_size` finds the input size at which a box can be matched wherever it lies on P3's grid: an anchor of
its own shape half a stride away on both axes still reaches the positive threshold.
"""

import dataclasses
import math

import numpy as np

from keras_retinanet.data.pipeline import padded_size
from keras_retinanet.data.statistics import InputGeometry, best_anchor_iou
from keras_retinanet.progress import image_progress

# Boxes the search scores each candidate on (every box is scored at the end).
SEARCH_SAMPLE = 20_000
GENERATIONS = 300
# The largest input scale `propose_input_size` proposes (4 x the pixels), and the share of boxes it aims to cover.
MAX_INPUT_SCALE = 2.0
COVERABLE_TARGET = 0.99
_MUTATION_SIGMA = (0.3, 0.02)  # the spread (log scale) of a mutation, from the first generation to the last


@dataclasses.dataclass(frozen=True)
class Score:
    """What anchors achieve on boxes: `coverage` (best IoU >= the threshold) and `mean_iou` (of the best IoUs)."""

    coverage: float
    mean_iou: float

    def key(self):
        return (self.coverage, self.mean_iou)


@dataclasses.dataclass(frozen=True)
class InputSizeProposal:
    """`min_size` / `max_size` at which `coverable_after` of the boxes can be matched (see the module docstring),
    against `coverable_before` at the current size; `pixel_ratio`: the padded input pixels (the time of a step,
    roughly) relative to now."""

    min_size: int
    max_size: int
    coverable_before: float
    coverable_after: float
    pixel_ratio: float


@dataclasses.dataclass(frozen=True)
class FittedAnchors:
    """The anchors before and after fitting (`AnchorConfig` fields: sizes, scales, aspect_ratios) with their
    `Score`s on every box at the matcher's `threshold`, the number of boxes and, where the small boxes need it, an
    `InputSizeProposal` (else None)."""

    before: dict
    after: dict
    before_score: Score
    after_score: Score
    threshold: float
    num_boxes: int
    input_size: object = None


def anchor_values(anchor_generator):
    """The `AnchorConfig` fields (sizes, scales, aspect_ratios) of `anchor_generator`, as tuples of floats."""
    return {"sizes": tuple(anchor_generator.sizes), "scales": tuple(anchor_generator.scales),
            "aspect_ratios": tuple(anchor_generator.aspect_ratios)}


def with_values(anchor_generator, values):
    """An `AnchorGenerator` like `anchor_generator` with the anchor `values` (see `anchor_values`)."""
    return type(anchor_generator).from_config({**anchor_generator.get_config(), **values, "name": None})


def score(boxes, anchor_generator, threshold):
    """The `Score` of `anchor_generator` on `boxes` (`ResizedBoxes`); nan without boxes."""
    best = best_anchor_iou(boxes.boxes, boxes.padded_sizes, anchor_generator)
    if not len(best):
        return Score(math.nan, math.nan)
    return Score(float(np.mean(best >= threshold)), float(np.mean(best)))


def fit_anchors(dataset, geometry, seed=0, generations=GENERATIONS, sample=SEARCH_SAMPLE, progress=False):
    """`FittedAnchors` for the boxes of `dataset` (a `DetectionDataset`) at the input of `geometry` (an
    `InputGeometry`), searched on `sample` boxes over `generations` (see the module docstring); `progress`: show a
    progress bar over the generations."""
    boxes = geometry.resized_boxes(dataset.records)
    threshold = geometry.matcher.positive_threshold
    current = geometry.anchor_generator
    before = anchor_values(current)
    before_score = score(boxes, current, threshold)
    after, after_score = before, before_score
    if len(boxes):
        rng = np.random.default_rng(seed)
        searched = boxes.take(np.sort(rng.choice(len(boxes), min(sample, len(boxes)), replace=False)))
        found = _rounded(_search(searched, current, threshold, rng, generations, progress))
        found_score = score(boxes, with_values(current, found), threshold)
        if found_score.key() > before_score.key():
            after, after_score = found, found_score
    return FittedAnchors(before, after, before_score, after_score, threshold, len(boxes),
                         propose_input_size(dataset, geometry, boxes))


def _search(boxes, current, threshold, rng, generations, progress):
    """The best anchor values found on `boxes` by the evolution from the better of the shape-based start and the
    `current` generator's values."""
    def fitness(values):
        return score(boxes, with_values(current, values), threshold).key()

    best = max((_start_from_shapes(boxes, current, fitness), anchor_values(current)), key=fitness)
    best_fitness = fitness(best)
    update = image_progress(generations, progress, unit="generation")
    for generation in range(generations):
        sigma = np.interp(generation, [0, max(generations - 1, 1)], _MUTATION_SIGMA)
        candidate = _mutated(best, rng, sigma)
        candidate_fitness = fitness(candidate)
        if candidate_fitness > best_fitness:
            best, best_fitness = candidate, candidate_fitness
        update(generation + 1)
    return best


def _start_from_shapes(boxes, current, fitness):
    """Anchor values from the box shapes: aspect ratios at evenly spaced quantiles of the boxes' (h/w), scales
    spread over an octave as the paper's, sizes doubling per level from the best of a grid of base sizes."""
    widths = boxes.boxes[:, 2] - boxes.boxes[:, 0]
    heights = boxes.boxes[:, 3] - boxes.boxes[:, 1]
    count = len(current.aspect_ratios)
    ratios = np.quantile(heights / widths, (np.arange(count) + 0.5) / count)
    scales = 2.0 ** (np.arange(len(current.scales)) / len(current.scales))
    levels = np.arange(len(current.sizes))

    def values(base):
        return {"sizes": tuple(float(base * 2.0**level) for level in levels), "scales": tuple(map(float, scales)),
                "aspect_ratios": tuple(map(float, ratios))}

    smallest = max(float(np.quantile(np.sqrt(widths * heights), 0.01)), 1.0)
    bases = smallest * 2.0 ** np.linspace(-1, 2, 13)
    return max((values(base) for base in bases), key=fitness)


def _mutated(values, rng, sigma):
    """`values` with each number multiplied by exp(N(0, sigma)) with probability 1/2 (at least one), each list kept
    in increasing order (sizes per level, as the levels' strides grow)."""
    flat = np.concatenate([values[name] for name in _FIELDS])
    changed = rng.random(len(flat)) < 0.5
    changed[rng.integers(len(flat))] = True
    flat = flat * np.exp(np.where(changed, rng.normal(0, sigma, len(flat)), 0.0))
    result, start = {}, 0
    for name in _FIELDS:
        length = len(values[name])
        result[name] = tuple(float(value) for value in np.sort(flat[start:start + length]))
        start += length
    return result


_FIELDS = ("sizes", "scales", "aspect_ratios")


def _rounded(values):
    """`values` as the YAML shows them: sizes to 0.1 pixel, scales and ratios to 3 decimals."""
    return {"sizes": tuple(round(size, 1) for size in values["sizes"]),
            "scales": tuple(round(scale, 3) for scale in values["scales"]),
            "aspect_ratios": tuple(round(ratio, 3) for ratio in values["aspect_ratios"])}


def coverable_scale(boxes, stride, threshold):
    """[B] the input scale (relative to the boxes' now) from which each `xyxy` box [B, 4] can be matched wherever it
    lies on a grid of `stride`: an anchor of its shape half a stride away on both axes has IoU >= `threshold`."""
    widths = np.asarray(boxes[:, 2] - boxes[:, 0], np.float64)
    heights = np.asarray(boxes[:, 3] - boxes[:, 1], np.float64)
    overlap = 2 * threshold / (1 + threshold)  # IoU >= t  <=>  intersection >= overlap * area, for equal shapes
    # (1 - v / w)(1 - v / h) = overlap, solved for the offset v (in pixels now) at which the IoU reaches t.
    b = 1 / widths + 1 / heights
    v = (b - np.sqrt(np.maximum(b**2 - 4 * (1 - overlap) / (widths * heights), 0))) * widths * heights / 2
    return (stride / 2) / v


def propose_input_size(dataset, geometry, boxes=None):
    """An `InputSizeProposal` that covers `COVERABLE_TARGET` of the boxes (a scale of at most `MAX_INPUT_SCALE`),
    or None when the current size already does (or there are no boxes)."""
    boxes = geometry.resized_boxes(dataset.records) if boxes is None else boxes
    if not len(boxes):
        return None
    stride = 2**geometry.anchor_generator.min_level
    needed = coverable_scale(boxes.boxes, stride, geometry.matcher.positive_threshold)
    before = float(np.mean(needed <= 1))
    if before >= COVERABLE_TARGET:
        return None
    scale = min(float(np.quantile(needed, COVERABLE_TARGET)), MAX_INPUT_SCALE)
    data = geometry.data
    min_size = int(math.ceil(data.min_size * scale / 32) * 32)
    max_size = int(math.ceil(data.max_size * min_size / data.min_size / 32) * 32)
    sizes = np.array([(record.height, record.width) for record in dataset.records], np.int64)
    proposed = InputGeometry(dataclasses.replace(data, min_size=min_size, max_size=max_size),
                             geometry.anchor_generator, geometry.matcher)
    pixels = [np.sum(np.prod(padded_size(g.resized_sizes(sizes), data.size_divisor), axis=1), dtype=np.float64)
              for g in (geometry, proposed)]
    after = float(np.mean(needed <= min_size / data.min_size))
    return InputSizeProposal(min_size, max_size, before, after, pixels[1] / pixels[0])


def format_fit(fitted):
    """The before / after report `bin/fit_anchors` prints."""
    lines = [f"{fitted.num_boxes} boxes; coverage: best anchor IoU >= {fitted.threshold:g}"]
    for name, values, result in (("before", fitted.before, fitted.before_score),
                                 ("after", fitted.after, fitted.after_score)):
        described = "; ".join(f"{field} {', '.join(f'{value:g}' for value in values[field])}" for field in _FIELDS)
        lines.append(f"  {name:<6} {100 * result.coverage:5.1f}% of boxes, mean best IoU {result.mean_iou:.3f} "
                     f"({described})")
    if fitted.after == fitted.before:
        lines.append("  no better anchors found: the current ones are kept")
    proposal = fitted.input_size
    if proposal is not None:
        lines.append(
            f"input size: {100 * proposal.coverable_before:.1f}% of boxes can be matched wherever they lie on P3's "
            f"grid now, {100 * proposal.coverable_after:.1f}% at data.min_size {proposal.min_size} / max_size "
            f"{proposal.max_size} ({proposal.pixel_ratio:.2f} x the pixels: about as much more time a step); fit "
            "again at that size")
    return "\n".join(lines)


def fitted_yaml(fitted):
    """The YAML to paste into an experiment config: `model: anchors:` and, if proposed, `data:` sizes."""
    after = fitted.after
    lines = ["model:", "  anchors:"]
    lines += [f"    {field}: [{', '.join(f'{value:g}' for value in after[field])}]" for field in _FIELDS]
    if fitted.input_size is not None:
        lines += ["data:", f"  min_size: {fitted.input_size.min_size}", f"  max_size: {fitted.input_size.max_size}"]
    return "\n".join(lines) + "\n"
