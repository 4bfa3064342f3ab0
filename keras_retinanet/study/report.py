"""The study's report: each table with the paper's numbers beside ours, the verdict on each of the paper's claims,
the figures, the data's measured imbalance and the machine."""

import math
import os
import statistics

from keras_retinanet.config import ConfigError
from keras_retinanet.study import figures

METRICS = ("AP", "AP50", "AP75")


def variant_ap(results, study, name, size, metric="AP"):
    """The metric of variant `name` at `size` px over its repeats: a list (empty if it diverged or lacks `size`)."""
    values = []
    for member in study.repeat_groups.get(name, [name]):
        evaluation = results.variants[member]["evaluations"].get(str(size))
        if evaluation is not None and not results.variants[member]["diverged"]:
            values.append(evaluation[metric])
    return values


def noise(results, study, size):
    """The pooled standard deviation of one run's AP over the repeat groups (None without repeats)."""
    deviations, degrees = 0.0, 0
    for name in study.repeat_groups:
        values = variant_ap(results, study, name, size)
        if len(values) > 1:
            deviations += statistics.variance(values) * (len(values) - 1)
            degrees += len(values) - 1
    return math.sqrt(deviations / degrees) if degrees else None


def claim_verdict(results, study, claim, size, sigma):
    """One line: does `claim` hold here? A diverged variant counts as AP 0 (both diverged: not decided). A
    difference within 2 sigma of the difference of two runs (2 sqrt(2) sigma) is within noise: that fails an
    ordering and passes a `similar` claim (which without a noise estimate allows 1 AP)."""
    measured = [variant_ap(results, study, name, size) for name in (claim.better, claim.worse)]
    if not any(measured):
        return f"- {claim.text}: **not decided** here: {claim.better} and {claim.worse} both diverged"
    aps = [statistics.mean(values) if values else 0.0 for values in measured]
    difference = aps[0] - aps[1]
    margin = None if sigma is None else 2 * math.sqrt(2) * sigma
    if claim.similar:
        verdict = "holds" if abs(difference) <= (0.01 if margin is None else margin) else "does not hold"
    elif margin is not None and abs(difference) <= margin:
        verdict = "within noise"
    else:
        verdict = "holds" if difference > 0 else "does not hold"
    noise_text = f"noise margin ±{100 * margin:.1f}" if margin is not None else "no noise estimate"
    return (f"- {claim.text}: **{verdict}** here ({claim.better} {100 * aps[0]:.1f} vs {claim.worse} "
            f"{100 * aps[1]:.1f} AP, {100 * difference:+.1f}; {noise_text})")


def _cell(values):
    if not values:
        return "-"
    if len(values) == 1:
        return f"{100 * values[0]:.1f}"
    return f"{100 * statistics.mean(values):.1f} ± {100 * statistics.stdev(values):.1f} (n={len(values)})"


def table_markdown(results, study, table, training_size, sigma):
    paper = [f"paper {column}" for column in table.paper_columns]
    ours = [f"ours {metric}" for metric in METRICS]
    extra = ["ms / image"] if table.timed else []
    header = [*table.columns, *paper, *ours, *extra, "train min", "variant"]
    lines = [f"| {' | '.join(header)} |", f"|{' --- |' * len(header)}"]
    for row in table.rows:
        size = row.eval_size or training_size
        result = results.variants[row.variant]
        if result["diverged"]:
            scores = [f"diverged (iteration {result['diverged_at']})"] + ["-"] * (len(METRICS) - 1)
        else:
            scores = [_cell(variant_ap(results, study, row.variant, size, metric)) for metric in METRICS]
        if table.timed:
            seconds = result["evaluations"].get(str(size), {}).get("seconds_per_image")
            extra = [f"{1000 * seconds:.1f}" if seconds else "-"]
        paper_cells = [f"{value}" for value in row.paper] or ["-"] * len(paper)
        minutes = f"{result.get('train_seconds', 0.0) / 60:.1f}"
        lines.append(f"| {' | '.join(map(str, [*row.cells, *paper_cells, *scores, *extra, minutes, row.variant]))} |")
    lines.append("")
    lines.extend(claim_verdict(results, study, claim, training_size, sigma) for claim in table.claims)
    return "\n".join(lines)


def read_discussion(path, study):
    """{table id: markdown} from a notes file of `## <table id>` sections (`## summary`: above the tables), the
    reading of the results that the report puts under each table."""
    sections, current = {}, None
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.readlines()
    except OSError as error:
        raise ConfigError(f"cannot read discussion file {path}: {error.strerror}") from None
    for number, line in enumerate(lines, 1):
        if line.startswith("## "):
            current = line[3:].strip()
            if current != "summary" and current not in {table.id for table in study.tables}:
                raise ConfigError(f"{path}:{number}: section '## {current}' names no table of {study.path} "
                                  "(use a table id, or 'summary')")
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
        elif line.strip():
            raise ConfigError(f"{path}:{number}: text before the first '## <table id>' section")
    return {key: "".join(text).strip() for key, text in sections.items()}


def write_report(path, results, study, header, discussion=None):
    """Writes the markdown report to `path` and its figures into `path`'s folder/figures; returns the paths.
    `discussion` ({table id: markdown}, see `read_discussion`) goes under each table."""
    discussion = discussion or {}
    folder = os.path.dirname(path) or "."
    figure_dir = os.path.join(folder, "figures", os.path.splitext(os.path.basename(path))[0])
    training_size = next(iter(results.variants.values()))["config"]["data"]["min_size"]
    sigma = noise(results, study, training_size)
    drawn = _draw_figures(figure_dir, results, study, training_size)
    lines = [*header, "", *_imbalance_and_noise(results, study, training_size, sigma)]
    if discussion.get("summary"):
        lines += [discussion["summary"], ""]
    for table in study.tables:
        lines += [f"## Table {table.id}: {table.title}", ""]
        if table.note:
            lines += [table.note.strip(), ""]
        lines += [table_markdown(results, study, table, training_size, sigma), ""]
        if discussion.get(table.id):
            lines += [discussion[table.id], ""]
    lines += ["## Figures", ""]
    for title, figure_path in drawn.items():
        lines += [f"### {title}", "", f"![{title}]({os.path.relpath(figure_path, folder)})", ""]
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(lines).rstrip() + "\n")
    return [path, *drawn.values()]


def _draw_figures(figure_dir, results, study, training_size):
    """{title: path} of the figures drawn into `figure_dir`: Figure 1, and Figure 4, AP against inference time and
    the training curves where the results hold them."""
    drawn = {"Figure 1 (analytic)": figures.figure_1(os.path.join(figure_dir, "figure_1_focal_loss.png"))}
    if results.figure_4:
        drawn["Figure 4"] = figures.figure_4(os.path.join(figure_dir, "figure_4_loss_distribution.png"),
                                             results.figure_4, study.figure_4["variant"])
    points = []  # (backbone, size, seconds per image, AP) of each timed row's variant that did not diverge
    for table in study.tables:
        for row in table.rows if table.timed else ():
            result = results.variants[row.variant]
            if not result["diverged"]:
                size = row.eval_size or training_size
                evaluation = result["evaluations"][str(size)]
                points.append((f"ResNet-{result['config']['model']['backbone']['depth']}", size,
                               evaluation["seconds_per_image"], evaluation["AP"]))
    if points:
        drawn["AP against inference time"] = figures.ap_against_time(os.path.join(figure_dir, "ap_vs_time.png"),
                                                                       points)
    if results.curves:
        drawn["Training curves"] = figures.training_curves(os.path.join(figure_dir, "training_curves.png"),
                                                           results.curves)
    return drawn


def _imbalance_and_noise(results, study, training_size, sigma):
    """The report's opening lines: the anchors' imbalance in the training split and, with repeats, the noise."""
    balance = results.balance
    total = balance["positive"] + balance["negative"] + balance["ignored"]
    lines = [f"Anchors of the training split at {training_size} px: {balance['positive']:,} positive, "
             f"{balance['negative']:,} negative, {balance['ignored']:,} ignored: **1 positive in "
             f"{total / max(1, balance['positive']):,.0f} anchors** "
             f"({100 * balance['positive'] / max(1, total):.3f}%).", ""]
    if sigma is not None:
        groups = ", ".join(f"{name}: {_cell(variant_ap(results, study, name, training_size))}"
                           for name in study.repeat_groups)
        lines += [f"Noise: AP over seeds (data order and initial weights) {groups}; pooled standard deviation of one "
                  f"run {100 * sigma:.2f} AP. A difference is called *within noise* when it is within "
                  f"2·√2·σ = {100 * 2 * math.sqrt(2) * sigma:.1f} AP.", ""]
    return lines
