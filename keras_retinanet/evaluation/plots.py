"""Evaluation figures as PNG files: precision-recall curves, the COCO error breakdown, the confusion matrix."""

import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from keras_retinanet.evaluation.analysis import BREAKDOWN  # noqa: E402

RECALL = np.linspace(0.0, 1.0, 101)
MAX_LABELLED_CLASSES = 12  # more classes: thin unlabelled lines beside the overall curve
BREAKDOWN_COLOURS = {"C75": "#1f3b73", "C50": "#3c78d8", "Loc": "#6aa84f", "Sim": "#f1c232", "Oth": "#e69138",
                     "BG": "#cc0000", "FN": "#bbbbbb"}


def save_figure(figure, path, dpi=100):
    """Writes a matplotlib `figure` to the PNG file `path` (folders made) and closes it; returns `path`."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def pr_curves(evaluation, path):
    """Precision against recall per class and over all (the mean over classes), at IoU 0.5 and 0.75, from a
    `CocoEvaluation` (all areas, 100 detections an image)."""
    figure, panels = plt.subplots(1, 2, figsize=(11, 4.5))
    for panel, (iou_index, iou) in zip(panels, ((0, 0.5), (5, 0.75))):
        curves, overall = evaluation.precision_curves(iou_index)
        labelled = len(curves) <= MAX_LABELLED_CLASSES
        for name, curve in curves.items():
            panel.plot(RECALL, curve, linewidth=1.2 if labelled else 0.6, alpha=0.9 if labelled else 0.4,
                       label=f"{name} [{curve.mean():.3f}]" if labelled else None)
        if overall is not None:
            panel.plot(RECALL, overall, color="black", linewidth=2.5, label=f"overall [{overall.mean():.3f}]")
        panel.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title=f"IoU {iou}")
        panel.legend(loc="lower left", fontsize="small")
    figure.suptitle("Precision-recall (all areas, 100 detections an image; [AP])")
    return save_figure(figure, path)


def error_breakdown(breakdown, path, max_classes=11):
    """Stacked areas of the COCO error breakdown (see `analysis.error_breakdown`): overall, then up to
    `max_classes` categories."""
    names = ["overall"] + [name for name in breakdown if name != "overall"][:max_classes]
    names = [name for name in names if name in breakdown]
    columns = min(4, len(names))
    rows = int(np.ceil(len(names) / columns))
    figure, panels = plt.subplots(rows, columns, figsize=(3.6 * columns, 3.2 * rows), squeeze=False)
    for panel, name in zip(panels.flat, names):
        curves, areas = breakdown[name]["curves"], breakdown[name]["areas"]
        for kind in reversed(BREAKDOWN):  # the widest (FN) first, under the rest
            panel.fill_between(RECALL, curves[kind], color=BREAKDOWN_COLOURS[kind], label=f"[{areas[kind]:.3f}] {kind}")
            panel.plot(RECALL, curves[kind], color="black", linewidth=0.4)
        panel.set(xlim=(0, 1), ylim=(0, 1), title=name, xlabel="recall", ylabel="precision")
        handles, labels = panel.get_legend_handles_labels()
        panel.legend(handles[::-1], labels[::-1], loc="lower left", fontsize="x-small")
    for panel in list(panels.flat)[len(names):]:
        panel.axis("off")
    figure.suptitle("COCO error breakdown: C75, C50 = PR at IoU .75, .5; Loc = IoU .1; Sim / Oth = class "
                    "confusions forgiven; BG = background FPs forgiven; FN = misses", fontsize="small")
    return save_figure(figure, path)


def confusion_matrix(matrix, category_names, path, iou_threshold, score_threshold):
    """Counts of true class (rows, + background) against predicted class (columns, + missed)."""
    labels_true = [*category_names, "background"]
    labels_predicted = [*category_names, "missed"]
    size = max(4.5, 0.45 * len(labels_true) + 2)
    figure, axes = plt.subplots(figsize=(size + 1, size))
    image = axes.imshow(np.log1p(matrix), cmap="Blues")
    if len(labels_true) <= 25:
        for (row, column), count in np.ndenumerate(matrix):
            if count:
                axes.text(column, row, str(count), ha="center", va="center", fontsize="small",
                          color="white" if np.log1p(count) > 0.6 * np.log1p(matrix.max()) else "black")
    axes.set_xticks(range(len(labels_predicted)), labels_predicted, rotation=60, ha="right", fontsize="small")
    axes.set_yticks(range(len(labels_true)), labels_true, fontsize="small")
    axes.set(xlabel="predicted", ylabel="true",
             title=f"Confusion at IoU {iou_threshold:g}, detections scoring >= {score_threshold:g}")
    figure.colorbar(image, ax=axes, label="log(1 + count)")
    return save_figure(figure, path)
