"""A study file: one experiment, trained in named variants (config overrides), reported as the paper's tables.

```yaml
experiment: base.yaml              # the experiment every variant starts from (relative to this file)
dataset: {train_images: 600, val_images: 100, image_size: 320, min_objects: 1, ...}  # generate_shapes_dataset
variants:                          # name: [dotted.key=value overrides]
  fl: []
  ce_alpha_0.75: [model.classification_loss.gamma=0, model.classification_loss.alpha=0.75]
repeats: {variants: [fl], seeds: [1, 2]}   # the same variants again with data.seed=1, 2: the noise estimate
tables:
  - id: 1a
    title: "alpha-balanced cross-entropy"
    columns: [alpha]               # what the row's `cells` are
    paper_columns: [AP, AP50, AP75]
    rows: [{variant: ce_alpha_0.75, cells: [0.75], paper: [31.1, 49.4, 33.0]}]   # eval_size: N to test at N px
    claims: [{better: fl, worse: ce_alpha_0.75, text: "FL beats the best CE"}]   # similar: true for "about equal"
    timed: false                   # true: time inference per image at each row's size
    note: "how the setup differs from the paper's"
figure_4: {variant: fl, gammas: [0, 0.5, 1, 2], images: 600}
curves: [fl, fl_no_prior]          # variants whose training curves are drawn
quick: {dataset: {...}, set: [...]}   # --quick: these on top, and only the first row of each table
```
"""

import dataclasses
import math
import os
import re
from typing import Optional

from keras_retinanet.config import ConfigError, cut, load_config, read_yaml, shown


@dataclasses.dataclass(frozen=True)
class Row:
    """One line of a table: a variant, evaluated at `eval_size` pixels (None: the training size)."""

    variant: str
    cells: tuple
    paper: tuple = ()
    eval_size: Optional[int] = None


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


@dataclasses.dataclass(frozen=True)
class Study:
    """A parsed study file; `quick` selects the --quick form (see `load_study`)."""

    path: str
    experiment: str
    dataset: dict
    variants: dict  # name -> tuple of overrides, the repeats included (name@seedN)
    tables: tuple
    repeat_groups: dict  # variant -> its names over seeds (itself first)
    figure_4: Optional[dict]
    curves: tuple
    overrides: tuple  # laid under every variant's own
    quick: bool

    def config(self, variant=None, first=()):
        """The experiment config of `variant` (None: the experiment under the study's overrides only), `first`
        (the generated data's paths) laid under the overrides; a ConfigError names the study file and the variant."""
        overrides = [*first, *self.overrides, *(self.variants[variant] if variant is not None else ())]
        try:
            return load_config(self.experiment, overrides)
        except ConfigError as error:
            raise ConfigError(f"{self.path}: {'the experiment' if variant is None else f'variant {variant!r}'}: "
                              f"{error}") from None


SEED_SUFFIX = "@seed"
# A variant's name is the name of its folder under --work_dir: no separators, no "..", nothing hidden, no "@" (the
# repeats' names are "<name>@seed<N>").
VARIANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]{0,99}")


def load_study(path, quick=False):
    """The study in YAML file `path`; with `quick`, its `quick` section applied, each table cut to its first row and
    no repeats (claims, curves and Figure 4 kept only where their variants still run).

    Every variant that will run has its config read (all overrides applied, every setting checked) here, so that a
    bad override is found before any variant trains; a variant's name must be a plain folder name (`VARIANT_NAME`).
    """
    data = read_yaml(path, "study file")
    if not isinstance(data, dict):  # said without quoting: the file may be anything
        raise ConfigError(f"{path}: not a YAML mapping (the top level is a {type(data).__name__})")
    where = _Where(path)
    data = where.mapping(data, "the top level", required=("experiment", "dataset", "variants", "tables"),
                         optional=("repeats", "figure_4", "curves", "quick"))
    quick_section = where.mapping(data.get("quick") or {}, "quick", optional=("dataset", "set")) if quick else {}
    experiment = os.path.join(os.path.dirname(path), where.string(data["experiment"], "experiment"))
    dataset = {**where.mapping(data["dataset"], "dataset"), **where.mapping(quick_section.get("dataset") or {},
                                                                          "quick.dataset")}
    variants = {where.variant_name(name): tuple(where.strings(overrides or [], f"variants.{name}"))
                for name, overrides in where.mapping(data["variants"], "variants").items()}
    tables = tuple(_table(where, item, index, variants)
                   for index, item in enumerate(where.list(data["tables"], "tables")))
    if quick:
        tables = tuple(dataclasses.replace(table, rows=table.rows[:1]) for table in tables)
    used = {row.variant for table in tables for row in table.rows}
    tables = tuple(dataclasses.replace(table, claims=tuple(claim for claim in table.claims
                                                           if {claim.better, claim.worse} <= used)) for table in tables)

    repeat_groups = _repeat_groups(where, data.get("repeats") or {}, variants, used, quick)
    used |= {name for group in repeat_groups.values() for name in group}
    figure_4 = _figure_4(where, data.get("figure_4"), variants, used)
    curves = tuple(name for name in where.strings(data.get("curves") or [], "curves")
                   if where.known(name, variants, "curves") in used)
    study = Study(path=path, experiment=experiment, dataset=dataset,
                  variants={name: overrides for name, overrides in variants.items() if name in used}, tables=tables,
                  repeat_groups=repeat_groups, figure_4=figure_4, curves=curves,
                  overrides=tuple(where.strings(quick_section.get("set") or [], "quick.set")), quick=quick)
    for variant in (None, *study.variants):
        study.config(variant)
    return study


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
        row = where.mapping(row, row_key, required=("variant", "cells"), optional=("paper", "eval_size"))
        cells, paper = tuple(where.list(row["cells"], f"{row_key}.cells")), tuple(row.get("paper") or ())
        if len(cells) != len(columns):
            raise ConfigError(f"{where.path}: '{row_key}.cells' has {len(cells)} values for {len(columns)} columns")
        if paper and len(paper) != len(paper_columns):
            raise ConfigError(f"{where.path}: '{row_key}.paper' has {len(paper)} values for {len(paper_columns)} "
                              "paper_columns")
        eval_size = row.get("eval_size")
        rows.append(Row(where.known(row["variant"], variants, f"{row_key}.variant"), cells, paper,
                        None if eval_size is None else where.integer(eval_size, f"{row_key}.eval_size", least=1)))
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

    def known(self, name, variants, key):
        if not isinstance(name, str) or name not in variants:
            raise ConfigError(f"{self.path}: '{key}' names variant {shown(name)}, which 'variants' does not define")
        return name
