"""The study runner on a tiny study: every variant trained and evaluated once, resumption after a kill, divergence
recorded as such, the report's tables and figures, and the study file's errors. Not the science: see
docs/paper_reproduction.md for that."""

import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

from keras_retinanet.config import ConfigError, load_config
from keras_retinanet.study import load_study
from keras_retinanet.study import runner as study_runner
from keras_retinanet.study.report import read_discussion, write_report
from tests.tiny import TINY_MODEL_YAML

EXPERIMENT = TINY_MODEL_YAML + """data: {min_size: 64, max_size: 64, max_boxes: 4, size_divisor: 32, cache_images: true}
train: {batch_size: 4, iterations: 4, learning_rate: 0.01, lr_steps: [4], warmup_iterations: 1, checkpoint_every: 2,
        eval_every: 4}
"""

STUDY = """experiment: tiny.yaml
dataset: {train_images: 8, val_images: 4, image_size: 64, min_objects: 1, max_objects: 2, min_size: 12, max_size: 24}
variants:
  fl: []
  ce: [model.classification_loss.gamma=0, model.classification_loss.alpha=0.75]
  blowup: [train.learning_rate=1.0e+12]
  blowup2: [train.learning_rate=1.0e+13]
tables:
  - id: 1b
    title: gamma
    columns: [gamma]
    paper_columns: [AP, AP50, AP75]
    rows:
      - {variant: ce, cells: [0], paper: [31.1, 49.4, 33.0]}
      - {variant: fl, cells: [2], paper: [34.0, 52.5, 36.5]}
      - {variant: blowup, cells: [huge lr], paper: [diverges, "-", "-"]}
      - {variant: blowup2, cells: [huger lr], paper: ["-", "-", "-"]}
    claims:
      - {better: fl, worse: ce, text: "FL beats CE"}
      - {better: fl, worse: blowup, text: "FL beats a diverged run"}
      - {better: blowup2, worse: blowup, text: "one diverged run beats another"}
  - id: 1e
    title: speed
    columns: [size]
    paper_columns: [AP]
    timed: true
    rows:
      - {variant: fl, eval_size: 64, cells: [64], paper: [30.5]}
      - {variant: fl, eval_size: 96, cells: [96], paper: [32.5]}
figure_4: {variant: fl, gammas: [0, 2], images: 8}
curves: [fl, blowup]
"""


def write_study(folder, text):
    """The study file `text` (its experiment the tiny one) written into `folder`: its path."""
    (folder / "tiny.yaml").write_text(EXPERIMENT)
    path = folder / "study.yaml"
    path.write_text(text)
    return path


@pytest.fixture()
def study_file(tmp_path):
    return write_study(tmp_path, STUDY)


class Interrupt(Exception):
    """Stands for a killed process."""


class InterruptOnSecondEpoch(keras.callbacks.Callback):
    """Interrupts training once the first epoch's backup is written."""

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == 1:
            raise Interrupt


@pytest.mark.slow  # trains for 15-70 s: `make test-slow`, which CI runs too
def test_a_study_runs_resumes_and_reports(study_file, tmp_path, monkeypatch):
    work_dir = str(tmp_path / "work")
    study = load_study(str(study_file))
    real_train = study_runner.train

    # A first run is killed in the middle of the second variant's training, after its first backup.
    def killed_in_ce(config, model_dir, callbacks=(), **kwargs):
        if model_dir.endswith("ce"):
            callbacks = [*callbacks, InterruptOnSecondEpoch()]
        return real_train(config, model_dir, callbacks=callbacks, **kwargs)

    monkeypatch.setattr(study_runner, "train", killed_in_ce)
    with pytest.raises(Interrupt):
        study_runner.run_study(study, work_dir, log=lambda text: None)
    assert os.path.exists(os.path.join(work_dir, "variants", "fl", study_runner.RESULT_FILE))
    assert not os.path.exists(os.path.join(work_dir, "variants", "ce", study_runner.RESULT_FILE))
    assert os.listdir(os.path.join(work_dir, "variants", "ce", "backup"))

    # The rerun trains only what is left: fl is read back, ce resumes at iteration 2.
    trained = []

    def recording(config, model_dir, **kwargs):
        trained.append(os.path.basename(model_dir))
        return real_train(config, model_dir, **kwargs)

    monkeypatch.setattr(study_runner, "train", recording)
    results = study_runner.run_study(study, work_dir, log=lambda text: None)
    assert trained == ["ce", "blowup", "blowup2"]
    ce_curve = json.load(open(os.path.join(work_dir, "variants", "ce", study_runner.CURVE_FILE)))
    assert ce_curve["iteration"] == [1, 2, 3, 4]  # the killed run's first two iterations kept, none twice
    assert all(np.isfinite(ce_curve["classification_loss"]))

    fl, ce, blowup = (results.variants[name] for name in ("fl", "ce", "blowup"))
    assert set(fl["evaluations"]) == {"64", "96"} and fl["evaluations"]["96"]["seconds_per_image"] > 0
    assert set(ce["evaluations"]) == {"64"} and "seconds_per_image" not in ce["evaluations"]["64"]
    assert all(0.0 <= fl["evaluations"]["64"][key] <= 1.0 for key in ("AP", "AP50", "AP75"))
    assert blowup["diverged"] and blowup["evaluations"] == {} and blowup["diverged_at"] >= 1
    assert results.curves["blowup"]["classification_loss"][-1] is None  # the non-finite step ends the curve

    balance = results.balance["default"]  # 8 images x 5 levels of 64 px anchors: (8^2 + 4^2 + 2^2 + 1 + 1) x 9 each
    assert balance["positive"] + balance["negative"] + balance["ignored"] == 8 * (64 + 16 + 4 + 1 + 1) * 9
    assert balance["positive"] > 0 and balance["classes"] == 4
    for gamma in ("0.0", "2.0"):
        for side in ("positive", "negative"):
            curve = np.asarray(results.figure_4[gamma][side])
            assert np.all(np.diff(curve) >= -1e-12) and curve[-1] == pytest.approx(1.0)
    # Higher gamma concentrates the negatives' loss on fewer anchors (Figure 4's point).
    assert results.figure_4["2.0"]["negative"][500] <= results.figure_4["0.0"]["negative"][500] + 1e-9

    # Nothing is retrained by a third run; the report has the tables, the verdicts and the figures.
    monkeypatch.setattr(study_runner, "train", None)
    results = study_runner.run_study(study, work_dir, log=lambda text: None)
    report_path = str(tmp_path / "docs" / "report.md")
    notes = tmp_path / "notes.md"
    notes.write_text("## summary\nOverall reading.\n\n## 1b\nWhy gamma matters here.\n\n## verdict\nWhat decides.\n")
    written = write_report(report_path, results, study, ["# Tiny study"], read_discussion(str(notes), study))
    text = open(report_path).read()
    assert text.index("Overall reading.") < text.index("## Table 1b") < text.index("Why gamma matters here.") \
        < text.index("## Table 1e") < text.index("## Verdict\n\nWhat decides.") < text.index("## Figures")
    assert ("| gamma | paper AP | paper AP50 | paper AP75 | ours AP | ours AP50 | ours AP75 | train min | variant |"
            in text)
    assert f"| 2 | 34.0 | 52.5 | 36.5 | {100 * fl['evaluations']['64']['AP']:.1f} |" in text
    assert f"| huge lr | diverges | - | - | diverged (iteration {blowup['diverged_at']}) |" in text
    fl_ap, ce_ap = (100 * result["evaluations"]["64"]["AP"] for result in (fl, ce))
    for text_start, worse_ap in (("FL beats a diverged run", 0.0), ("FL beats CE", ce_ap)):  # diverged: AP 0
        verdict = "holds" if fl_ap > worse_ap else "does not hold"  # no repeats: no noise margin
        assert f"- {text_start}: **{verdict}** here" in text
    assert "- one diverged run beats another: **not decided** here: blowup2 and blowup both diverged" in text
    assert "| 96 | 32.5 |" in text and "ms / image" in text
    assert "1 positive in" in text
    for path in written[1:]:
        assert path.endswith(".png") and Image.open(path).size[0] > 300
        assert os.path.relpath(path, os.path.dirname(report_path)) in text
    assert len(written) == 5  # report, Figure 1, Figure 4, AP vs time, training curves


def test_a_changed_variant_is_not_mixed_with_its_old_result(study_file, tmp_path):
    work_dir = str(tmp_path / "work")
    (tmp_path / "one.yaml").write_text(STUDY.replace("  ce: [", "  unused: [").replace("  blowup: [", "  unused2: [")
                                       .split("tables:")[0] + "tables:\n  - {id: x, title: x, columns: [], rows: "
                                       "[{variant: fl, cells: []}]}\n")
    study_runner.run_study(load_study(str(tmp_path / "one.yaml")), work_dir, log=lambda text: None)
    changed = tmp_path / "changed.yaml"
    changed.write_text((tmp_path / "one.yaml").read_text().replace("  fl: []", "  fl: [train.learning_rate=0.02]"))
    with pytest.raises(ConfigError, match="variants/fl holds a result of another config"):
        study_runner.run_study(load_study(str(changed)), work_dir, log=lambda text: None)
    other_data = tmp_path / "other_data.yaml"
    other_data.write_text((tmp_path / "one.yaml").read_text().replace("train_images: 8", "train_images: 12"))
    with pytest.raises(ConfigError, match="holds a dataset generated with"):
        study_runner.run_study(load_study(str(other_data)), work_dir, log=lambda text: None)


@pytest.mark.parametrize("edit, message", [
    (("variant: ce, cells: [0]", "variant: cee, cells: [0]"), r"'tables\[0\].rows\[0\].variant' names variant 'cee'"),
    (("cells: [2]", "cells: [2, 3]"), r"'tables\[0\].rows\[1\].cells' has 2 values for 1 columns"),
    (("paper: [30.5]", "paper: [30.5, 1]"), r"'tables\[1\].rows\[0\].paper' has 2 values for 1 paper_columns"),
    (("figure_4: {variant: fl,", "figure_4: {variant: f2,"), r"'figure_4.variant' names variant 'f2'"),
    (("timed: true", "timed: true\n    colour: red"), r"unknown key\(s\) colour in 'tables\[1\]'"),
    (("experiment: tiny.yaml\n", ""), "'the top level' lacks experiment"),
    # Every variant's config is read at load, so that the last variant's bad override stops nothing half-way.
    (("blowup2: [train.learning_rate=1.0e+13]", "blowup2: [train.learning_rate=-1]"),
     r"variant 'blowup2': .*tiny.yaml: 'train.learning_rate' must be in \(0, inf\), got -1$"),
    (("blowup2: [train.learning_rate=1.0e+13]", 'blowup2: ["model.anchors.sizes=[16]"]'),
     r"variant 'blowup2': .*tiny.yaml: 'model.anchors.sizes' = \(16.0,\): needs one size per pyramid level"),
    (("blowup2: [train.learning_rate=1.0e+13]", "blowup2: [train.lerning_rate=1]"),
     r"variant 'blowup2': .*tiny.yaml: unknown key 'train.lerning_rate'"),
    (("figure_4: {variant: fl, gammas: [0, 2]", "figure_4: {variant: fl, gammas: [0, -2]"),
     r"'figure_4.gammas' must be a number of at least 0, got -2"),
    (("eval_size: 96", "eval_size: 0"), r"'tables\[1\].rows\[1\].eval_size' must be an integer of at least 1, got 0"),
    # A variant's name is its folder under --work_dir: nothing that leads elsewhere.
    *((("  blowup2: [", f"  {name}: ["), rf"variant {re.escape(shown)} cannot be a folder name under --work_dir")
      for name, shown in (("../../../x", "'../../../x'"), ("a/b", "'a/b'"), ("/tmp/x", "'/tmp/x'"),
                          ('"a\\0b"', "'a\\x00b'"), (".hidden", "'.hidden'"), ("..", "'..'"),
                          ("fl@seed1", "'fl@seed1'"), ('"a\\\\b"', "'a\\\\b'"))),
])
def test_study_file_errors_name_the_file_and_key(study_file, edit, message):
    study_file.write_text(STUDY.replace(*edit))
    with pytest.raises(ConfigError, match=f"{study_file}: {message}"):
        load_study(str(study_file))


@pytest.mark.parametrize("text, message", [
    ("[" * 200_000, "nested too deeply to read"),
    ("root:x:0:0:root:/root:/bin/bash\n", r"not a YAML mapping \(the top level is a str\)"),
    ("variants: {fl: [\n", r"not valid YAML: .*\(line \d+, column \d+\)"),
])
def test_study_files_that_are_no_study_are_named(study_file, text, message):
    study_file.write_text(text)
    with pytest.raises(ConfigError, match=f"^{study_file}: {message}$"):
        load_study(str(study_file))


def test_a_damaged_result_of_a_finished_variant_is_named_and_kept(study_file, tmp_path, monkeypatch):
    """Results are written atomically: one that does not read back was damaged from outside, and is not overwritten."""
    work_dir = tmp_path / "work"
    monkeypatch.setattr(study_runner, "train", None)  # nothing trains
    for damaged, message in (('{"variant": "fl", "con', r"not the JSON the study wrote \(Unterminated string"),
                             ("[]", "not the JSON object the study wrote"),
                             ('{"variant": "fl"}', r"not a result the study wrote \(it lacks config, diverged, ")):
        result = work_dir / "variants" / "fl" / study_runner.RESULT_FILE
        result.parent.mkdir(parents=True, exist_ok=True)
        result.write_text(damaged)
        with pytest.raises(ConfigError, match=f"^{result}: {message}.*delete it to"):
            study_runner.run_study(load_study(str(study_file)), str(work_dir), log=lambda text: None)
        assert result.read_text() == damaged


def test_discussion_sections_must_name_tables(study_file, tmp_path):
    study = load_study(str(study_file))
    notes = tmp_path / "notes.md"
    notes.write_text("## 1b\nfine\n## 9z\nno such table\n")
    with pytest.raises(ConfigError, match=r"notes.md:3: section '## 9z' names no table"):
        read_discussion(str(notes), study)
    notes.write_text("stray text\n## 1b\n")
    with pytest.raises(ConfigError, match="notes.md:1: text before the first"):
        read_discussion(str(notes), study)
    with pytest.raises(ConfigError, match="cannot read discussion file"):
        read_discussion(str(tmp_path / "missing.md"), study)


def test_quick_keeps_the_first_row_of_each_table_and_the_claims_it_can_judge(study_file):
    study = load_study(str(study_file), quick=True)
    assert [table.rows[0].variant for table in study.tables] == ["ce", "fl"]
    assert [len(table.rows) for table in study.tables] == [1, 1]
    assert set(study.variants) == {"ce", "fl"}
    assert [claim.text for claim in study.tables[0].claims] == ["FL beats CE"]  # the other names a dropped variant


def test_the_shipped_study_files_load_and_the_command_line_reports_a_bad_file_in_one_line(tmp_path):
    for quick in (False, True):
        study = load_study("configs/study/paper.yaml", quick=quick)
        assert {table.id for table in study.tables} == {"1a", "1b", "1c", "1d", "A", "prior", "1e", "schedule", "many",
                                                       "step", "pretrained", "threshold"}
        for overrides in study.variants.values():  # every variant's overrides name real settings
            load_config(study.experiment, [*study.overrides, *overrides])
    process = subprocess.run([sys.executable, "bin/study", f"--study={tmp_path}/missing.yaml"], capture_output=True,
                             text=True)
    assert process.returncode == 1
    assert process.stderr.strip().splitlines()[-1] == f"error: cannot read study file {tmp_path}/missing.yaml: No " \
                                                     "such file or directory"
    (tmp_path / "tiny.yaml").write_text(EXPERIMENT)
    (tmp_path / "study.yaml").write_text(STUDY.replace("  blowup2: [", "  ../../../x: ["))
    process = subprocess.run([sys.executable, "bin/study", f"--study={tmp_path}/study.yaml",
                              f"--work_dir={tmp_path}/work"], capture_output=True, text=True)
    assert process.returncode == 1 and "Traceback" not in process.stderr
    assert process.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}/study.yaml: variant '../../../x' cannot be a folder name under --work_dir: name variants "
        "with letters, digits and _ . + = - (a letter or digit first)")
    assert not (tmp_path / "work").exists() and not (tmp_path.parent / "x").exists()
