"""The study's report: each table with the paper's numbers beside ours, the verdict on each of the paper's claims,
the gradient norms, the figures, each dataset's measured imbalance and the machine."""

import math
import os
import statistics

from keras_retinanet.config import ConfigError
from keras_retinanet.study import figures
from keras_retinanet.study.spec import evaluation_key

METRICS = ("AP", "AP50", "AP75")


def variant_ap(results, study, name, size, metric="AP", score_threshold=None):
    """The metric of variant `name` at `size` px (with the decoder at `score_threshold`; None: the variant's own)
    over its repeats: a list (empty if it diverged or lacks that evaluation)."""
    values = []
    for member in study.repeat_groups.get(name, [name]):
        evaluation = results.variants[member]["evaluations"].get(evaluation_key(size, score_threshold))
        if evaluation is not None and not results.variants[member]["diverged"]:
            values.append(evaluation[metric])
    return values


def noise(results, study, size, dataset=None):
    """The pooled standard deviation of one run's AP over the repeat groups (of the variants on `dataset`; None:
    all), None without repeats."""
    deviations, degrees = 0.0, 0
    for name in study.repeat_groups:
        if dataset is not None and study.dataset_of(name) != dataset:
            continue
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


def table_datasets(study, table):
    """The datasets of `table`'s rows (their variants'), in order of appearance."""
    return tuple(dict.fromkeys(study.dataset_of(row.variant) for row in table.rows))


def table_markdown(results, study, table, training_size, sigma):
    """The table (a `dataset` column where its rows span datasets; OHEM's NMS drops where a row's variant has them
    measured), then a line on each OHEM row's NMS and the verdict on each claim."""
    several = len(table_datasets(study, table)) > 1
    ohem = [row for row in table.rows if "ohem_nms" in results.variants[row.variant]]
    paper = [f"paper {column}" for column in table.paper_columns]
    ours = [f"ours {metric}" for metric in METRICS]
    extra = ["ms / image"] if table.timed else []
    header = [*(["dataset"] if several else []), *table.columns, *paper, *ours, *extra,
              *(["NMS drops / image"] if ohem else []), "train min", "variant"]
    lines = [f"| {' | '.join(header)} |", f"|{' --- |' * len(header)}"]
    for row in table.rows:
        size = row.eval_size or training_size
        key = evaluation_key(size, row.score_threshold)
        result = results.variants[row.variant]
        if result["diverged"]:
            at = result.get("diverged_at")
            scores = [f"diverged (iteration {at})" if at is not None else "not trained"] + ["-"] * (len(METRICS) - 1)
        else:
            scores = [_cell(variant_ap(results, study, row.variant, size, metric, row.score_threshold))
                      for metric in METRICS]
        if table.timed:
            seconds = result["evaluations"].get(key, {}).get("seconds_per_image")
            extra = [f"{1000 * seconds:.1f}" if seconds else "-"]
        drops = [f"{result['ohem_nms']['dropped_per_image']:.1f}" if "ohem_nms" in result else "-"] if ohem else []
        paper_cells = [f"{value}" for value in row.paper] or ["-"] * len(paper)
        minutes = f"{result.get('train_seconds', 0.0) / 60:.1f}"
        cells = [*([study.dataset_of(row.variant)] if several else []), *row.cells, *paper_cells, *scores, *extra,
                 *drops, minutes, row.variant]
        lines.append(f"| {' | '.join(map(str, cells))} |")
    lines.append("")
    for variant in dict.fromkeys(row.variant for row in ohem):
        lines.append(_ohem_line(variant, results.variants[variant]["ohem_nms"]))
    lines.extend(claim_verdict(results, study, claim, training_size, sigma) for claim in table.claims)
    return "\n".join(lines)


def _ohem_line(variant, measured):
    threshold, largest = measured["nms_iou_threshold"], measured["largest_anchor_iou"]
    bound = (f"no two distinct anchors overlap above IoU {largest:.2f}, so at {threshold:g} its NMS can remove no "
             "anchor" if largest < threshold else f"the largest IoU between two distinct anchors is {largest:.2f}")
    return (f"- OHEM's NMS in {variant}: at IoU {threshold:g} it dropped {measured['dropped_per_image']:.1f} of the "
            f"{measured['selected_per_image']:.0f} anchors of an image's minibatch (mean over {measured['images']} "
            f"training images, scored by the trained model); {bound}.")


# The discussion sections that are no table's: above the tables, and after them (before the figures).
FREE_SECTIONS = {"summary": None, "verdict": "Verdict"}


def read_discussion(path, study):
    """{table id: markdown} from a notes file of `## <table id>` sections, the reading of the results that the report
    puts under each table; `## summary` goes above the tables, `## verdict` after them, as its own section."""
    sections, current = {}, None
    try:
        with open(path, encoding="utf-8") as file:
            lines = file.readlines()
    except OSError as error:
        raise ConfigError(f"cannot read discussion file {path}: {error.strerror}") from None
    for number, line in enumerate(lines, 1):
        if line.startswith("## "):
            current = line[3:].strip()
            if current not in FREE_SECTIONS and current not in {table.id for table in study.tables}:
                raise ConfigError(f"{path}:{number}: section '## {current}' names no table of {study.path} "
                                  f"(use a table id, or one of {', '.join(FREE_SECTIONS)})")
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
        elif line.strip():
            raise ConfigError(f"{path}:{number}: text before the first '## <table id>' section")
    return {key: "".join(text).strip() for key, text in sections.items()}


def write_report(path, results, study, header, discussion=None):
    """Writes the markdown report to `path` and its figures into `path`'s folder/figures; returns the paths.
    `discussion` ({table id: markdown}, see `read_discussion`) goes under each table. With several datasets, the
    tables come in a section per dataset (tables whose rows span datasets in a section of their own)."""
    discussion = discussion or {}
    folder = os.path.dirname(path) or "."
    figure_dir = os.path.join(folder, "figures", os.path.splitext(os.path.basename(path))[0])
    training_size = next(iter(results.variants.values()))["config"]["data"]["min_size"]
    drawn = _draw_figures(figure_dir, results, study, training_size)
    lines = [*header, "", *_imbalance_and_noise(results, study, training_size)]
    if discussion.get("summary"):
        lines += [discussion["summary"], ""]
    sections = {}
    for table in study.tables:
        sections.setdefault(table_datasets(study, table), []).append(table)
    several = len(study.datasets) > 1
    for datasets, tables in sections.items():
        if several:
            lines += [f"## {_dataset_heading(results, datasets)}", ""]
        sigma = _table_noise(results, study, training_size, datasets)
        for table in tables:
            lines += [f"{'###' if several else '##'} Table {table.id}: {table.title}", ""]
            if table.note:
                lines += [table.note.strip(), ""]
            lines += [table_markdown(results, study, table, training_size, sigma), ""]
            if discussion.get(table.id):
                lines += [discussion[table.id], ""]
    lines += _gradient_norms(results, study)
    if discussion.get("verdict"):
        lines += [f"## {FREE_SECTIONS['verdict']}", "", discussion["verdict"], ""]
    lines += ["## Figures", ""]
    for title, figure_path in drawn.items():
        lines += [f"### {title}", "", f"![{title}]({os.path.relpath(figure_path, folder)})", ""]
    with open(path, "w", encoding="utf-8") as file:
        file.write("\n".join(lines).rstrip() + "\n")
    return [path, *drawn.values()]


def _dataset_heading(results, datasets):
    if len(datasets) > 1:
        return f"Tables across datasets ({', '.join(datasets)})"
    balance = results.balance[datasets[0]]
    return (f"Dataset {datasets[0]}: {balance['classes']} classes, {negative_terms(balance):,.0f} negative sigmoid "
            "terms per positive anchor")


def _table_noise(results, study, size, datasets):
    """The noise a table's claims are judged with: its dataset's where it has repeats, else all datasets'."""
    sigma = noise(results, study, size, datasets[0]) if len(datasets) == 1 else None
    return noise(results, study, size) if sigma is None else sigma


def negative_terms(balance):
    """Negative sigmoid terms per positive anchor: negative anchors x classes / positive anchors (the sigmoid terms
    of a positive anchor's other classes left out)."""
    return balance["negative"] * balance["classes"] / max(1, balance["positive"])


def _gradient_norms(results, study):
    """A section with the median gradient norms (before clipping) and the clipped steps of the variants whose
    training logged them; none without."""
    rows = []
    for name in study.variants:
        result = results.variants[name]
        norms = result.get("gradient_norms")
        if norms is None:
            continue
        medians = [norms["median"].get(key) for key in ("gradient_norm", "classification_gradient_norm",
                                                         "box_gradient_norm")]
        clip = result["config"]["train"]["clip_norm"]
        clipped = "-" if norms["clipped_steps"] is None else f"{norms['clipped_steps']} of {norms['steps']}"
        rows.append(f"| {name} | {' | '.join('-' if value is None else f'{value:.3g}' for value in medians)} | "
                    f"{'none' if clip is None else f'{clip:g}'} | {clipped} |")
    if not rows:
        return []
    return ["## Gradient norms", "",
            "Median over the training steps of the gradient's global norm before clipping, in all and of each loss "
            "term alone (box: with any regularization), and the steps whose norm exceeded train.clip_norm (clipped).",
            "", "| variant | all | classification | box | clip norm | clipped steps |",
            f"|{' --- |' * 6}", *rows, ""]


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
                evaluation = result["evaluations"][evaluation_key(size, row.score_threshold)]
                points.append((f"ResNet-{result['config']['model']['backbone']['depth']}", size,
                               evaluation["seconds_per_image"], evaluation["AP"]))
    if points:
        drawn["AP against inference time"] = figures.ap_against_time(os.path.join(figure_dir, "ap_vs_time.png"),
                                                                       points)
    if results.curves:
        drawn["Training curves"] = figures.training_curves(os.path.join(figure_dir, "training_curves.png"),
                                                           results.curves)
    return drawn


def _imbalance_and_noise(results, study, training_size):
    """The report's opening lines: each dataset's anchors in its training split and, with repeats, the noise."""
    several = len(results.balance) > 1
    lines = []
    for name, balance in results.balance.items():
        total = balance["positive"] + balance["negative"] + balance["ignored"]
        lines += [f"Anchors of the training split{f' of dataset {name}' if several else ''} at {training_size} px: "
                  f"{balance['positive']:,} positive, {balance['negative']:,} negative, {balance['ignored']:,} "
                  f"ignored: **1 positive in {total / max(1, balance['positive']):,.0f} anchors** "
                  f"({100 * balance['positive'] / max(1, total):.3f}%); with {balance['classes']} classes, "
                  f"**{negative_terms(balance):,.0f} negative sigmoid terms per positive anchor** (negative anchors × "
                  "classes / positive anchors).", ""]
    for name in results.balance if several else [None]:
        sigma = noise(results, study, training_size, name)
        if sigma is None:
            continue
        groups = ", ".join(f"{group}: {_cell(variant_ap(results, study, group, training_size))}"
                           for group in study.repeat_groups if name is None or study.dataset_of(group) == name)
        lines += [f"Noise{f' on dataset {name}' if several else ''}: AP over seeds (data order and initial weights) "
                  f"{groups}; pooled standard deviation of one run {100 * sigma:.2f} AP. A difference is called "
                  f"*within noise* when it is within 2·√2·σ = {100 * 2 * math.sqrt(2) * sigma:.1f} AP.", ""]
    if several and any(noise(results, study, training_size, name) is None for name in results.balance) \
            and noise(results, study, training_size) is not None:
        lines += ["Claims on a dataset without repeats are judged with the noise pooled over all datasets' repeats: "
                  f"σ = {100 * noise(results, study, training_size):.2f} AP.", ""]
    return lines
