"""The study's figures as PNG files: Figure 1 (analytic), Figure 4 (measured), AP against time, training curves."""

import math

import matplotlib.pyplot as plt
import numpy as np

from keras_retinanet.evaluation.plots import save_figure  # also selects matplotlib's file-only backend

FIGURE_1_GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)


def figure_1(path, gammas=FIGURE_1_GAMMAS):
    """Loss against the probability of the ground-truth class, -(1 - p_t)^gamma log(p_t), for each gamma."""
    p_t = np.linspace(1e-3, 1.0, 500)
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for gamma in gammas:
        axes.plot(p_t, -((1 - p_t) ** gamma) * np.log(p_t), label=f"γ = {gamma:g}")
    axes.axvspan(0.6, 1.0, color="0.92")
    axes.text(0.8, 4.2, "well-classified\nexamples", ha="center")
    axes.set(xlabel="probability of ground truth class $p_t$", ylabel="loss", ylim=(0, 5), xlim=(0, 1),
             title="Figure 1: focal loss (γ = 0 is cross-entropy)")
    axes.legend()
    return save_figure(figure, path, dpi=110)


def figure_4(path, curves, variant):
    """Cumulative normalised loss of the positive and negative anchors, one line per gamma (`runner` quantiles)."""
    figure, panels = plt.subplots(1, 2, figsize=(10, 4.2))
    for panel, side in zip(panels, ("positive", "negative")):
        for gamma, curve in curves.items():
            fractions = np.linspace(0, 1, len(curve[side]))
            panel.plot(fractions, curve[side], label=f"γ = {float(gamma):g}")
        count = next(iter(curves.values()))["count"][side == "negative"]
        panel.set(xlabel=f"fraction of {side} anchors (n = {count:,})", ylabel="cumulative normalized loss",
                  xlim=(0, 1), ylim=(0, 1), title=f"{side} samples")
        panel.legend(loc="upper left")
    figure.suptitle(f"Figure 4: loss distribution of the trained '{variant}' model")
    return save_figure(figure, path, dpi=110)


def ap_against_time(path, points):
    """AP (%) against inference milliseconds per image: `points` [(series label, size, seconds, AP)]."""
    figure, axes = plt.subplots(figsize=(6, 4.5))
    for label in dict.fromkeys(point[0] for point in points):
        series = sorted((seconds, ap, size) for name, size, seconds, ap in points if name == label)
        axes.plot([1000 * s for s, _, _ in series], [100 * a for _, a, _ in series], "o-", label=label)
        for seconds, ap, size in series:
            axes.annotate(f"{size}", (1000 * seconds, 100 * ap), textcoords="offset points", xytext=(4, -10))
    axes.set(xlabel="inference time per image (ms, this machine)", ylabel="COCO AP (%)",
             title="Figure 2 / Table 1e analogue: speed against accuracy")
    axes.legend()
    return save_figure(figure, path, dpi=110)


def training_curves(path, curves, smoothing=20):
    """Classification loss per iteration (log scale; a moving median over `smoothing` iterations) of each named
    curve; a diverged run ends with a cross at its last finite loss."""
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for name, curve in curves.items():
        iterations = np.asarray(curve["iteration"])
        losses = np.array([math.nan if value is None else value for value in curve["classification_loss"]])
        smoothed = np.array([np.nanmedian(losses[max(0, i - smoothing + 1): i + 1]) if np.isfinite(losses[i])
                             else math.nan for i in range(len(losses))])
        (line,) = axes.plot(iterations, smoothed, label=name)
        if len(losses) and not np.isfinite(losses[-1]):
            finite = np.flatnonzero(np.isfinite(losses))
            if len(finite):
                axes.plot(iterations[finite[-1]], losses[finite[-1]], "x", color=line.get_color(), markersize=10)
    axes.set(yscale="log", xlabel="iteration", ylabel="classification loss (per step)",
             title="Training curves (x: the loss became NaN/inf next)")
    axes.legend()
    return save_figure(figure, path, dpi=110)
