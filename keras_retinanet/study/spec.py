"""A study file: one experiment, trained in named variants (config overrides), reported as the paper's tables.

```yaml
experiment: base.yaml              # the experiment every variant starts from (relative to this file)
dataset: {train_images: 600, val_images: 100, image_size: 320, min_objects: 1, ...}  # generate_shapes_dataset
datasets:                          # more generated datasets, by name (`dataset` is the one named "default")
  many: {train_images: 600, val_images: 100, image_size: 256, colours: 10, ...}
variants:                          # name: [dotted.key=value overrides], on the default dataset
  fl: []
  ce_alpha_0.75: [model.classification_loss.gamma=0, model.classification_loss.alpha=0.75]
  fl_many: {dataset: many, set: []}                 # or {dataset: <name>, set: [overrides]}
  fl_from_ce: [model.init_from=variant:ce_alpha_0.75]   # starts from that variant's trained model
repeats: {variants: [fl], seeds: [1, 2]}   # the same variants again with data.seed=1, 2: the noise estimate
tables:
  - id: 1a
    title: "alpha-balanced cross-entropy"
    columns: [alpha]               # what the row's `cells` are
    paper_columns: [AP, AP50, AP75]
    rows: [{variant: ce_alpha_0.75, cells: [0.75], paper: [31.1, 49.4, 33.0]}]
    claims: [{better: fl, worse: ce_alpha_0.75, text: "FL beats the best CE"}]   # similar: true for "about equal"
    timed: false                   # true: time inference per image at each row's size
    note: "how the setup differs from the paper's"
figure_4: {variant: fl, gammas: [0, 0.5, 1, 2], images: 600}
curves: [fl, fl_no_prior]          # variants whose training curves are drawn
quick: {dataset: {...}, datasets: {many: {...}}, set: [...]}   # --quick: these on top, only each table's first row
```

A row may also give `eval_size: N` (test at N px) and `score_threshold: T` (test with the decoder keeping
detections above T instead of the variant's `model.decoder.score_threshold`). A table lists variants only: the
dataset of each row is its variant's.

Datasets: each is generated once, the default under `--work_dir`/data and each other under data/<name> (a name is
a folder name, not `annotations`, `train` or `val`). With --quick, `quick.dataset` is laid over every dataset and
`quick.datasets.<name>` over that one only.

`model.init_from=variant:<name>` (in a variant's own overrides) starts the variant from the trained model of variant
<name> (its `model.keras` under --work_dir, given to training as an absolute path): the study trains <name> first,
even with --quick where no table row keeps it, and refuses a cycle. The dependent's config is the study's in full
(the source gives weights, not settings).
"""

import dataclasses
import math
import os
import re
from typing import Optional

from keras_retinanet.config import ConfigError, cut, load_config, read_yaml, shown


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of a table: a variant, evaluated at `eval_size` pixels (None: the training size) with the decoder's
    `score_threshold` (None: the variant's own)."""

    variant: str
    cells: tuple
    paper: tuple = ()
    eval_size: Optional[int] = None
    score_threshold: Optional[float] = None


def evaluation_key(size, score_threshold=None):
    """The key of an evaluation at `size` px with the decoder at `score_threshold` (None: the variant's own) in a
    variant's result: the size alone for the variant's own threshold, as results written before thresholds were."""
    return str(size) if score_threshold is None else f"{size}@{score_threshold:g}"


@dataclasses.dataclass(frozen=True)
class Claim:
    """The paper's reading: variant `better` has the higher AP than `worse` (`similar`: about the same AP)."""

    better: str
    worse: str
    text: str
    similar: bool = False


@dataclasses.dataclass(frozen=True)
class Table:
    id: str
    title: str
    columns: tuple
    paper_columns: tuple
    rows: tuple
    claims: tuple = ()
    timed: bool = False
    note: str = ""


DEFAULT_DATASET = "default"


@dataclasses.dataclass(frozen=True)
class Study:
    """A parsed study file; `quick` selects the --quick form (see `load_study`). Its variants are in training
    order: a variant's source (`sources`) comes before it."""

    path: str
    experiment: str
    datasets: dict  # name -> generate_shapes_dataset arguments, of the datasets the variants use
    variants: dict  # name -> tuple of overrides, the repeats included (name@seedN)
    tables: tuple
    repeat_groups: dict  # variant -> its names over seeds (itself first)
    figure_4: Optional[dict]
    curves: tuple
    overrides: tuple  # laid under every variant's own
    quick: bool
    variant_datasets: dict = dataclasses.field(default_factory=dict)  # variant -> the name of its dataset
    sources: dict = dataclasses.field(default_factory=dict)  # variant -> the variant whose model it starts from

    @property
    def dataset(self):
        """The default dataset's arguments (None where no variant uses it)."""
        return self.datasets.get(DEFAULT_DATASET)

    def dataset_of(self, variant):
        """The name of the dataset `variant` trains and is evaluated on."""
        return self.variant_datasets.get(variant, DEFAULT_DATASET)

    def config(self, variant=None, first=(), last=()):
        """The experiment config of `variant` (None: the experiment under the study's overrides only), `first`
        (the generated data's paths) laid under the overrides and `last` over them (the model a `variant:` source
        names); a ConfigError names the study file and the variant."""
        overrides = [*first, *self.overrides, *(self.variants[variant] if variant is not None else ()), *last]
        try:
            return load_config(self.experiment, overrides)
        except ConfigError as error:
            raise ConfigError(f"{self.path}: {'the experiment' if variant is None else f'variant {variant!r}'}: "
                              f"{error}") from None


SEED_SUFFIX = "@seed"
# A variant's name is the name of its folder under --work_dir: no separators, no "..", nothing hidden, no "@" (the
# repeats' names are "<name>@seed<N>").
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]{0,99}")
# A dataset's name is its folder under --work_dir/data, beside the default dataset's own folders.
RESERVED_DATASET_NAMES = ("annotations", "train", "val")
SOURCE_PREFIX = "variant:"  # model.init_from=variant:<name>


def load_study(path, quick=False):
    """The study in YAML file `path`; with `quick`, its `quick` section applied, each table cut to its first row and
    no repeats (claims, curves and Figure 4 kept only where their variants still run; a variant another starts
    from runs wherever that one does).

    Every variant that will run has its config read (all overrides applied, every setting checked) here, so that a
    bad override is found before any variant trains; a variant's name must be a plain folder name (`VARIANT_NAME`).
    """
    data = read_yaml(path, "study file")
    if not isinstance(data, dict):  # said without quoting: the file may be anything
        raise ConfigError(f"{path}: not a YAML mapping (the top level is a {type(data).__name__})")
    where = _Where(path)
    data = where.mapping(data, "the top level", required=("experiment", "variants", "tables"),
                         optional=("dataset", "datasets", "repeats", "figure_4", "curves", "quick"))
    quick_section = where.mapping(data.get("quick") or {}, "quick", optional=("dataset", "datasets", "set")) \
        if quick else {}
    experiment = os.path.join(os.path.dirname(path), where.string(data["experiment"], "experiment"))
    datasets = _datasets(where, data, quick_section)
    variants, variant_datasets, sources = {}, {}, {}
    for name, value in where.mapping(data["variants"], "variants").items():
        name = where.variant_name(name)
        variants[name], variant_datasets[name] = _variant(where, name, value, datasets)
        source = _source(variants[name])
        if source is not None:
            sources[name] = source
    for name, source in sources.items():
        where.known(source, variants, f"variants.{name} (model.init_from)")
    tables = tuple(_table(where, item, index, variants)
                   for index, item in enumerate(where.list(data["tables"], "tables")))
    if quick:
        tables = tuple(dataclasses.replace(table, rows=table.rows[:1]) for table in tables)
    used = _with_sources({row.variant for table in tables for row in table.rows}, sources)
    tables = tuple(dataclasses.replace(table, claims=tuple(claim for claim in table.claims
                                                           if {claim.better, claim.worse} <= used)) for table in tables)

    repeat_groups = _repeat_groups(where, data.get("repeats") or {}, variants, used, quick)
    for name, group in repeat_groups.items():
        for member in group[1:]:
            variant_datasets[member] = variant_datasets[name]
            if name in sources:
                sources[member] = sources[name]
    used |= {name for group in repeat_groups.values() for name in group}
    figure_4 = _figure_4(where, data.get("figure_4"), variants, used)
    curves = tuple(name for name in where.strings(data.get("curves") or [], "curves")
                   if where.known(name, variants, "curves") in used)
    running = [name for name in _in_training_order(where, variants, sources) if name in used]
    study = Study(path=path, experiment=experiment,
                  datasets={name: parameters for name, parameters in datasets.items()
                            if name in {variant_datasets[variant] for variant in running}},
                  variants={name: variants[name] for name in running}, tables=tables,
                  repeat_groups=repeat_groups, figure_4=figure_4, curves=curves,
                  overrides=tuple(where.strings(quick_section.get("set") or [], "quick.set")), quick=quick,
                  variant_datasets={name: variant_datasets[name] for name in running},
                  sources={name: source for name, source in sources.items() if name in used})
    thresholds = {}
    for variant in (None, *study.variants):
        config = study.config(variant)
        init_from = config.model.init_from
        if init_from and init_from.startswith(SOURCE_PREFIX) and variant not in study.sources:
            raise ConfigError(f"{path}: {'the experiment' if variant is None else f'variant {variant!r}'}: "
                              f"'model.init_from' = {shown(init_from)}: a variant is named only as "
                              f"model.init_from={SOURCE_PREFIX}<name>, in a variant's own overrides")
        thresholds[variant] = config.model.decoder.score_threshold
    # A row at its variant's own threshold is its plain evaluation (`evaluation_key`).
    return dataclasses.replace(study, tables=tuple(dataclasses.replace(table, rows=tuple(
        dataclasses.replace(row, score_threshold=None) if row.score_threshold == thresholds[row.variant] else row
        for row in table.rows)) for table in study.tables))


def _datasets(where, data, quick_section):
    """{name: generate_shapes_dataset arguments} of `dataset` (named "default") and `datasets`, each with the
    quick section's settings over it."""
    datasets = {}
    if "dataset" in data:
        datasets[DEFAULT_DATASET] = where.mapping(data["dataset"], "dataset")
    for name, parameters in where.mapping(data.get("datasets") or {}, "datasets").items():
        if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name) or name in RESERVED_DATASET_NAMES:
            raise ConfigError(f"{where.path}: dataset {shown(name)} cannot be a folder name under --work_dir/data: "
                              "name datasets with letters, digits and _ . + = - (a letter or digit first), other "
                              f"than {', '.join(RESERVED_DATASET_NAMES)}")
        if name in datasets:
            raise ConfigError(f"{where.path}: 'datasets.{name}' and 'dataset' both give the default dataset: give "
                              "one")
        datasets[name] = where.mapping(parameters, f"datasets.{name}")
    if not datasets:
        raise ConfigError(f"{where.path}: 'the top level' lacks dataset (or datasets)")
    every = where.mapping(quick_section.get("dataset") or {}, "quick.dataset")
    only = where.mapping(quick_section.get("datasets") or {}, "quick.datasets")
    for name in only:
        where.known(name, datasets, "quick.datasets", kind="dataset")
    return {name: {**parameters, **every, **where.mapping(only.get(name) or {}, f"quick.datasets.{name}")}
            for name, parameters in datasets.items()}


def _variant(where, name, value, datasets):
    """(overrides, dataset name) of variant `name`: a list of overrides (the default dataset) or a mapping
    {dataset, set}."""
    key = f"variants.{name}"
    if isinstance(value, dict):
        value = where.mapping(value, key, required=("dataset",), optional=("set",))
        dataset, overrides = where.known(value["dataset"], datasets, f"{key}.dataset", kind="dataset"), \
            value.get("set")
    else:
        dataset, overrides = DEFAULT_DATASET, value
        if DEFAULT_DATASET not in datasets:
            raise ConfigError(f"{where.path}: '{key}' is a list of overrides, which runs on the default dataset, "
                              "but the study has none ('dataset'): write it as {dataset: <name>, set: [...]}")
    return tuple(where.strings(overrides or [], key)), dataset


def _source(overrides):
    """The variant named by a `model.init_from=variant:<name>` override (the last one), or None."""
    source = None
    for override in overrides:
        key, _, text = override.partition("=")
        if key.strip() == "model.init_from":
            text = text.strip()
            source = text[len(SOURCE_PREFIX):] if text.startswith(SOURCE_PREFIX) else None
    return source


def _in_training_order(where, variants, sources):
    """`variants` reordered so that each variant's source comes before it (else in the file's order); a
    ConfigError names a cycle."""
    ordered = {}

    def visit(name, chain):
        if name in chain:
            cycle = " -> ".join([*chain[chain.index(name):], name])
            raise ConfigError(f"{where.path}: the variants start from each other's models in a cycle ({cycle}, by "
                              f"model.init_from={SOURCE_PREFIX}<name>)")
        if name not in ordered:
            if name in sources:
                visit(sources[name], [*chain, name])
            ordered[name] = variants[name]

    for name in variants:
        visit(name, [])
    return ordered


def _with_sources(names, sources):
    """`names` and, transitively, the variants their models start from."""
    names = set(names)
    pending = list(names)
    while pending:
        source = sources.get(pending.pop())
        if source is not None and source not in names:
            names.add(source)
            pending.append(source)
    return names


def _repeat_groups(where, section, variants, used, quick):
    """{variant: its names over seeds (itself first)} of the `repeats` section, for the variants that run (none
    with `quick`); the seeds' variants (`<name>@seed<N>`, `data.seed=N` added) are added to `variants`."""
    repeats = where.mapping(section, "repeats", optional=("variants", "seeds"))
    seeds = [where.integer(seed, "repeats.seeds") for seed in where.list(repeats.get("seeds") or [], "repeats.seeds")]
    repeat_groups = {}
    for name in where.strings(repeats.get("variants") or [], "repeats.variants"):
        where.known(name, variants, "repeats.variants")
        if name not in used or quick:
            continue
        repeat_groups[name] = [name]
        for seed in seeds:
            variants[f"{name}{SEED_SUFFIX}{seed}"] = (*variants[name], f"data.seed={seed}")
            repeat_groups[name].append(f"{name}{SEED_SUFFIX}{seed}")
    return repeat_groups


def _figure_4(where, section, variants, used):
    """The checked `figure_4` section, or None without one or where its variant does not run."""
    if not section:
        return None
    figure_4 = where.mapping(section, "figure_4", required=("variant", "gammas"), optional=("images",))
    where.known(figure_4["variant"], variants, "figure_4.variant")
    for gamma in where.list(figure_4["gammas"], "figure_4.gammas"):
        where.number(gamma, "figure_4.gammas")
    if "images" in figure_4:
        where.integer(figure_4["images"], "figure_4.images", least=1)
    return figure_4 if figure_4["variant"] in used else None


def _table(where, item, index, variants):
    key = f"tables[{index}]"
    item = where.mapping(item, key, required=("id", "title", "columns", "rows"),
                         optional=("paper_columns", "claims", "timed", "note"))
    columns = tuple(where.strings(item["columns"], f"{key}.columns"))
    paper_columns = tuple(where.strings(item.get("paper_columns") or [], f"{key}.paper_columns"))
    rows = []
    for number, row in enumerate(where.list(item["rows"], f"{key}.rows")):
        row_key = f"{key}.rows[{number}]"
        row = where.mapping(row, row_key, required=("variant", "cells"),
                            optional=("paper", "eval_size", "score_threshold"))
        cells, paper = tuple(where.list(row["cells"], f"{row_key}.cells")), tuple(row.get("paper") or ())
        if len(cells) != len(columns):
            raise ConfigError(f"{where.path}: '{row_key}.cells' has {len(cells)} values for {len(columns)} columns")
        if paper and len(paper) != len(paper_columns):
            raise ConfigError(f"{where.path}: '{row_key}.paper' has {len(paper)} values for {len(paper_columns)} "
                              "paper_columns")
        eval_size, score_threshold = row.get("eval_size"), row.get("score_threshold")
        if score_threshold is not None and where.number(score_threshold, f"{row_key}.score_threshold") >= 1:
            where.fail(f"{row_key}.score_threshold", "a number in [0, 1)", score_threshold)
        rows.append(Row(where.known(row["variant"], variants, f"{row_key}.variant"), cells, paper,
                        None if eval_size is None else where.integer(eval_size, f"{row_key}.eval_size", least=1),
                        None if score_threshold is None else float(score_threshold)))
    if not rows:
        raise ConfigError(f"{where.path}: '{key}.rows' is empty")
    claims = []
    for number, claim in enumerate(where.list(item.get("claims") or [], f"{key}.claims")):
        claim = where.mapping(claim, f"{key}.claims[{number}]", required=("better", "worse", "text"),
                              optional=("similar",))
        claims.append(Claim(*(where.known(claim[side], variants, f"{key}.claims[{number}].{side}")
                              for side in ("better", "worse")), str(claim["text"]), bool(claim.get("similar"))))
    return Table(id=str(item["id"]), title=str(item["title"]), columns=columns, paper_columns=paper_columns,
                 rows=tuple(rows), claims=tuple(claims), timed=bool(item.get("timed", False)),
                 note=str(item.get("note", "")))


@dataclasses.dataclass
class _Where:
    """Checks of a study file's values; errors name the file and the key."""

    path: str

    def fail(self, key, expected, value):
        raise ConfigError(f"{self.path}: '{cut(str(key))}' must be {expected}, got {shown(value)}")

    def mapping(self, value, key, required=(), optional=None):
        if not isinstance(value, dict):
            self.fail(key, "a mapping", value)
        missing = [name for name in required if name not in value]
        if missing:
            raise ConfigError(f"{self.path}: '{key}' lacks {', '.join(missing)}")
        if optional is not None:
            unknown = [cut(str(name)) for name in value if name not in (*required, *optional)]
            if unknown:
                raise ConfigError(f"{self.path}: unknown key(s) {', '.join(unknown)} in '{key}' (known: "
                                  f"{', '.join([*required, *optional])})")
        return value

    def list(self, value, key):
        if not isinstance(value, list):
            self.fail(key, "a list", value)
        return value

    def string(self, value, key):
        if not isinstance(value, str) or not value:
            self.fail(key, "a non-empty string", value)
        return value

    def strings(self, value, key):
        return [self.string(item, key) for item in self.list(value, key)]

    def integer(self, value, key, least=0):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            self.fail(key, f"an integer of at least {least}", value)
        return value

    def number(self, value, key):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
            self.fail(key, "a number of at least 0", value)
        return value

    def variant_name(self, name):
        if not isinstance(name, str) or not VARIANT_NAME.fullmatch(name):
            raise ConfigError(f"{self.path}: variant {shown(name)} cannot be a folder name under --work_dir: name "
                              "variants with letters, digits and _ . + = - (a letter or digit first)")
        return name

    def known(self, name, defined, key, kind="variant"):
        if not isinstance(name, str) or name not in defined:
            raise ConfigError(f"{self.path}: '{key}' names {kind} {shown(name)}, which '{kind}s' does not define")
        return name
