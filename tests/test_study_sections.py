"""The study machinery of the paper's later sections: several datasets in one study, a variant starting from another
variant's model, evaluation at another score threshold, OHEM's NMS measured, gradient norms in the records, and the
report's sections for them. Cheap: nothing trains here but in the slow test at the end."""

import json
import os
import types

import numpy as np
import pytest

from keras_retinanet.config import ConfigError, load_config, to_dict
from keras_retinanet.study import load_study
from keras_retinanet.study import runner as study_runner
from keras_retinanet.study.report import write_report
from keras_retinanet.study.spec import evaluation_key
from tests.test_study import write_study

# The default dataset and a second one of two classes, as the study files below share them.
DATASETS = """\
dataset: {train_images: 8, val_images: 4, image_size: 64, min_objects: 1, max_objects: 2, min_size: 12, max_size: 24}
datasets:
  two: {train_images: 8, val_images: 4, image_size: 64, min_objects: 1, max_objects: 2, min_size: 12, max_size: 24,
        classes: [circle, square]}
"""

STUDY = "experiment: tiny.yaml\n" + DATASETS + """variants:
  tuned: {dataset: two, set: [model.init_from=variant:fl, train.learning_rate=0.005]}
  fl: []
  ce: [model.classification_loss.gamma=0, model.classification_loss.alpha=0.5]
  ohem: [model.classification_loss.type=ohem, model.classification_loss.alpha=null]
  fl_two: {dataset: two}
  unused: {dataset: two, set: [train.iterations=8]}
repeats: {variants: [fl, tuned], seeds: [1]}
tables:
  - id: t
    title: thresholds
    columns: [loss, score]
    rows:
      - {variant: ce, cells: [CE, 0.05]}
      - {variant: fl, cells: [FL, 0.05], score_threshold: 0.05}
      - {variant: fl, cells: [FL, 0.001], score_threshold: 0.001}
      - {variant: ohem, cells: [OHEM, 0.05]}
    claims: [{better: fl, worse: ce, text: "FL beats CE"}]
  - id: two
    title: on two classes
    columns: [start]
    rows:
      - {variant: tuned, cells: [fl's model]}
      - {variant: fl_two, cells: [scratch]}
    claims: [{better: tuned, worse: fl_two, text: "a trained start helps"}]
quick:
  dataset: {train_images: 4}
  datasets: {two: {val_images: 2}}
"""


@pytest.fixture()
def study_file(tmp_path):
    return write_study(tmp_path, STUDY)


def test_datasets_variants_on_them_and_sources_first(study_file):
    study = load_study(str(study_file))
    assert list(study.datasets) == ["default", "two"]  # "unused" runs in no table: its dataset stays only as used
    assert study.dataset == study.datasets["default"] and study.datasets["two"]["classes"] == ["circle", "square"]
    assert {name: study.dataset_of(name) for name in study.variants} == {
        "fl": "default", "tuned": "two", "ce": "default", "ohem": "default", "fl_two": "two", "fl@seed1": "default",
        "tuned@seed1": "two"}
    # The source trains first although the file lists it after its dependent; a repeat starts from the same model.
    assert list(study.variants).index("fl") < list(study.variants).index("tuned")
    assert study.sources == {"tuned": "fl", "tuned@seed1": "fl"}
    assert "unused" not in study.variants
    assert study.variants["tuned"] == ("model.init_from=variant:fl", "train.learning_rate=0.005")


def test_quick_lays_its_dataset_over_every_dataset_and_keeps_a_source(study_file):
    study = load_study(str(study_file), quick=True)
    assert list(study.variants) == ["fl", "tuned", "ce"]  # tuned's source runs although no first row names it
    assert study.datasets["default"]["train_images"] == study.datasets["two"]["train_images"] == 4
    assert study.datasets["two"]["val_images"] == 2 and study.datasets["default"]["val_images"] == 4


def test_a_row_at_the_variants_own_threshold_is_its_plain_evaluation(study_file):
    rows = load_study(str(study_file)).tables[0].rows
    assert [row.score_threshold for row in rows] == [None, None, 0.001, None]  # 0.05 is the decoder's default
    assert [evaluation_key(64, row.score_threshold) for row in rows] == ["64", "64", "64@0.001", "64"]


@pytest.mark.parametrize("edit, message", [
    (("  two: {train_images", "  train: {train_images"), "dataset 'train' cannot be a folder name under"),
    (("datasets:\n  two:", "datasets:\n  default: {}\n  two:"), "'datasets.default' and 'dataset' both give the "
                                                                 "default dataset"),
    (("{dataset: two, set: [train.iterations=8]}", "{dataset: three}"),
     r"'variants.unused.dataset' names dataset 'three', which 'datasets' does not define"),
    (("{dataset: two, set: [train.iterations=8]}", "{dataset: two, sets: []}"),
     r"unknown key\(s\) sets in 'variants.unused'"),
    (("  datasets: {two: {val_images: 2}}", "  datasets: {three: {}}"),
     "'quick.datasets' names dataset 'three'"),
    (("model.init_from=variant:fl,", "model.init_from=variant:flx,"),
     r"'variants.tuned \(model.init_from\)' names variant 'flx'"),
    (("  fl: []", "  fl: [model.init_from=variant:tuned]"),
     r"the variants start from each other's models in a cycle \(tuned -> fl -> tuned, by "
     r"model.init_from=variant:<name>\)"),
    (("  fl: []", "  fl: [model.init_from=variant:fl]"), r"the variants start from each other's models in a cycle "
                                                          r"\(fl -> fl,"),
    (("  datasets: {two: {val_images: 2}}", "  set: [model.init_from=variant:fl]"),
     "the experiment: 'model.init_from' = 'variant:fl': a variant is named only as model.init_from=variant:<name>"),
    (("score_threshold: 0.001}", "score_threshold: 1.5}"),
     r"'tables\[0\].rows\[2\].score_threshold' must be a number in \[0, 1\), got 1.5"),
    (("score_threshold: 0.001}", "score_threshold: -0.1}"),
     r"'tables\[0\].rows\[2\].score_threshold' must be a number of at least 0, got -0.1"),
])
def test_errors_in_the_new_sections_name_the_file_and_key(study_file, edit, message):
    assert edit[0] in STUDY
    study_file.write_text(STUDY.replace(*edit))
    with pytest.raises(ConfigError, match=f"{study_file}: {message}"):
        load_study(str(study_file), quick=True)


def test_a_list_variant_needs_the_default_dataset(study_file):
    study_file.write_text(STUDY.replace("dataset: {train_images", "unused_key: {train_images", 1)
                          .replace("unused_key:", "# no default dataset:"))
    with pytest.raises(ConfigError, match="'variants.fl' is a list of overrides, which runs on the default dataset"):
        load_study(str(study_file))
    study_file.write_text("experiment: tiny.yaml\nvariants: {fl: []}\ntables: []\n")
    with pytest.raises(ConfigError, match="'the top level' lacks dataset \\(or datasets\\)"):
        load_study(str(study_file))


def test_a_source_becomes_its_model_file_however_work_dir_is_written(study_file, tmp_path, monkeypatch):
    study = load_study(str(study_file))
    monkeypatch.chdir(tmp_path)
    data = study_runner._Data(str(tmp_path / "w" / "data" / "two"), {"train": str(tmp_path / "a.json")})
    configs = [study_runner._variant_config(study, "tuned", data, work_dir)
               for work_dir in ("w", "./w", str(tmp_path / "w"), "w/../w")]
    assert all(config == configs[0] for config in configs)
    assert configs[0].model.init_from == str(tmp_path / "w" / "variants" / "fl" / "model.keras")
    assert configs[0].train.learning_rate == 0.005  # the variant's own overrides still apply
    assert study_runner._variant_config(study, "fl", data, "w").model.init_from is None


def test_row_evaluations_reach_the_repeats_and_timing_only_the_variant(study_file):
    study_file.write_text(STUDY.replace("    claims: [{better: fl, worse: ce", "    timed: true\n    claims: "
                                                                              "[{better: fl, worse: ce"))
    wanted = study_runner._evaluations_wanted(load_study(str(study_file)), 64)
    assert wanted["fl"] == {"64": study_runner.Evaluation(64, None, True),
                            "64@0.001": study_runner.Evaluation(64, 0.001, True)}
    assert wanted["fl@seed1"] == {"64": study_runner.Evaluation(64), "64@0.001": study_runner.Evaluation(64, 0.001)}
    assert wanted["fl_two"] == {"64": study_runner.Evaluation(64)}


class FakeDecoder:
    score_threshold = 0.05


def test_an_old_result_gains_the_evaluations_it_lacks_from_its_model_file(monkeypatch, tmp_path):
    """A result keyed by size only (as results were written before thresholds) keeps its evaluation; the one at
    another threshold is made on a model loaded anew, its decoder at that threshold, and nothing trains."""
    loaded, evaluated = [], []

    def load(path):
        loaded.append(types.SimpleNamespace(decoder=FakeDecoder(), path=path))
        return loaded[-1]

    def evaluate(model, dataset, data, batch_size, ground_truth):
        evaluated.append((model, model.decoder.score_threshold, data.min_size))
        return types.SimpleNamespace(metrics={"AP": 0.5, "AP50": 0.75, "AP75": 0.25}), None

    monkeypatch.setattr(study_runner, "load_trained_model", load)
    monkeypatch.setattr(study_runner, "evaluate_model", evaluate)
    monkeypatch.setattr(study_runner, "train", None)
    config = load_config(None, ["data.min_size=64", "data.max_size=64"])
    data = types.SimpleNamespace(val="val split", annotations={"val": "val.json"})
    old = {"AP": 0.1, "AP50": 0.2, "AP75": 0.05}
    result = {"config": {}, "diverged": None, "evaluations": {"64": dict(old)}}
    wanted = {"64": study_runner.Evaluation(64), "64@0.001": study_runner.Evaluation(64, 0.001),
              "96@0.001": study_runner.Evaluation(96, 0.001)}
    log = []
    assert study_runner._measure(result, config, str(tmp_path), data, wanted, None, log.append)
    assert result["evaluations"] == {"64": old, "64@0.001": {"AP": 0.5, "AP50": 0.75, "AP75": 0.25},
                                     "96@0.001": {"AP": 0.5, "AP50": 0.75, "AP75": 0.25}}
    assert len(loaded) == 1 and loaded[0].path == os.path.join(str(tmp_path), "model.keras")
    assert [(threshold, size) for _, threshold, size in evaluated] == [(0.001, 64), (0.001, 96)]
    assert log == ["evaluating at 64 px, score threshold 0.001", "evaluating at 96 px, score threshold 0.001"]
    assert not study_runner._measure(result, config, str(tmp_path), data, wanted, None, log.append)  # all there
    # A model trained just now evaluates at its own threshold itself; another threshold gets a model of its own.
    trained = types.SimpleNamespace(decoder=FakeDecoder())
    result["evaluations"] = {}
    study_runner._measure(result, config, str(tmp_path), data, wanted, trained, log.append)
    assert evaluated[2][:2] == (trained, 0.05) and evaluated[3][0] is loaded[1] and evaluated[3][1] == 0.001


class FakeOptimizer:
    def __init__(self):
        self.iterations = types.SimpleNamespace(numpy=lambda: self.done)
        self.done = 0


def run_curve(curve, steps, epoch_size, logged):
    """Feeds `curve` the running means Keras logs of per-step values `steps` ({key: [values]})."""
    curve.set_model(types.SimpleNamespace(optimizer=FakeOptimizer()))
    curve.model.optimizer.done = len(curve.record["iteration"]) if os.path.exists(curve.path) else 0
    curve.on_train_begin()
    count = len(next(iter(steps.values())))
    for start in range(0, count, epoch_size):
        curve.on_epoch_begin(start // epoch_size)
        for batch, step in enumerate(range(start, min(count, start + epoch_size))):
            curve.model.optimizer.done += 1
            curve.on_train_batch_end(batch, {key: float(np.mean(values[start:step + 1]))
                                             for key, values in steps.items() if key in logged})
        curve.on_epoch_end(start // epoch_size)


def test_the_curve_records_gradient_norms_per_step_and_the_result_their_medians(tmp_path):
    rng = np.random.default_rng(0)
    norms = rng.uniform(1.0, 30.0, 12)
    steps = {"classification_loss": rng.uniform(0.1, 1.0, 12), "box_loss": rng.uniform(0.1, 1.0, 12),
             "gradient_norm": norms, "classification_gradient_norm": 0.75 * norms,
             "box_gradient_norm": 0.25 * norms, "clipped": (norms > 10.0).astype(float)}
    path = str(tmp_path / "curve.json")
    curve = study_runner.LossCurve(path)
    run_curve(curve, steps, 5, set(steps))
    record = json.load(open(path))
    assert record["iteration"] == list(range(1, 13))
    for key, values in steps.items():
        np.testing.assert_allclose(record[key], values, rtol=1e-6, atol=1e-9)
    summary = study_runner.gradient_norm_summary(record)
    assert summary == {"median": {"gradient_norm": pytest.approx(np.median(norms)),
                                  "classification_gradient_norm": pytest.approx(0.75 * np.median(norms)),
                                  "box_gradient_norm": pytest.approx(0.25 * np.median(norms))},
                       "clipped_steps": int((norms > 10.0).sum()), "steps": 12}
    assert 0 < summary["clipped_steps"] < 12
    # Without clipping nothing is counted; without gradient norms logged there is no summary.
    del record["clipped"]
    assert study_runner.gradient_norm_summary(record)["clipped_steps"] is None
    losses_only = study_runner.LossCurve(str(tmp_path / "losses.json"))
    run_curve(losses_only, steps, 5, {"classification_loss", "box_loss"})
    assert set(losses_only.record) == {"iteration", "classification_loss", "box_loss", "seconds"}
    assert study_runner.gradient_norm_summary(losses_only.record) is None


def test_a_resumed_curve_drops_the_steps_after_the_backup_from_every_series(tmp_path):
    path = str(tmp_path / "curve.json")
    steps = {key: np.arange(1.0, 9.0) for key in ("classification_loss", "box_loss", "gradient_norm", "clipped")}
    run_curve(study_runner.LossCurve(path), steps, 4, set(steps))
    resumed = study_runner.LossCurve(path)
    resumed.set_model(types.SimpleNamespace(optimizer=FakeOptimizer()))
    resumed.model.optimizer.done = 4  # the backup of the first epoch
    resumed.on_train_begin()
    assert {key: len(values) for key, values in resumed.record.items() if key != "seconds"} == {
        "iteration": 4, "classification_loss": 4, "box_loss": 4, "gradient_norm": 4, "clipped": 4}


def fake_results(study, balance):
    """StudyResults with made-up numbers for every variant of `study`."""
    results = {}
    for number, name in enumerate(study.variants):
        config = to_dict(study.config(name))
        ap = 0.1 + 0.01 * number
        results[name] = {"variant": name, "config": config, "diverged": None, "train_seconds": 60.0,
                         "evaluations": {"64": {"AP": ap, "AP50": ap + 0.2, "AP75": ap - 0.05}}}
    return study_runner.StudyResults(results, balance, {}, {}, 1.0)


def test_the_report_has_a_section_per_dataset_thresholds_ohem_and_gradient_norms(study_file, tmp_path):
    study = load_study(str(study_file))
    results = fake_results(study, {"default": {"positive": 100, "negative": 35_000, "ignored": 900, "classes": 4},
                                   "two": {"positive": 50, "negative": 20_000, "ignored": 100, "classes": 2}})
    results.variants["fl"]["evaluations"]["64@0.001"] = {"AP": 0.456, "AP50": 0.7, "AP75": 0.4}
    results.variants["ohem"]["ohem_nms"] = {"images": 32, "nms_iou_threshold": 0.7, "dropped_per_image": 0.0,
                                            "selected_per_image": 128.0, "largest_anchor_iou": 0.63}
    results.variants["ce"]["gradient_norms"] = {
        "median": {"gradient_norm": 12.5, "classification_gradient_norm": 11.0, "box_gradient_norm": 2.25},
        "clipped_steps": 40, "steps": 300}
    path = str(tmp_path / "report.md")
    write_report(path, results, study, ["# Test"])
    text = open(path).read()
    # The imbalance line per dataset, with the measure: negative anchors x classes / positive anchors.
    assert "training split of dataset default at 64 px: 100 positive, 35,000 negative, 900 ignored" in text
    assert "with 4 classes, **1,400 negative sigmoid terms per positive anchor**" in text
    assert "with 2 classes, **800 negative sigmoid terms per positive anchor**" in text
    assert text.index("## Dataset default: 4 classes, 1,400") < text.index("### Table t: thresholds") \
        < text.index("## Dataset two: 2 classes, 800") < text.index("### Table two: on two classes")
    assert "| FL | 0.001 | 45.6 | 70.0 | 40.0 | - | 1.0 | fl |" in text  # the row at 0.001 reads that evaluation
    assert "(n=2)" in next(line for line in text.splitlines() if line.startswith("| FL | 0.05 |"))  # fl's repeats
    assert "| OHEM | 0.05 | " in text and "| 0.0 | 1.0 | ohem |" in text and "NMS drops / image" in text
    assert ("- OHEM's NMS in ohem: at IoU 0.7 it dropped 0.0 of the 128 anchors of an image's minibatch (mean over "
            "32 training images, scored by the trained model); no two distinct anchors overlap above IoU 0.63, so at "
            "0.7 its NMS can remove no anchor.") in text
    assert "## Gradient norms" in text and "| ce | 12.5 | 11 | 2.25 | none | 40 of 300 |" in text
    assert "| fl |" not in text.split("## Gradient norms")[1].split("## Figures")[0]  # no norms logged: no row


def test_one_dataset_keeps_the_report_as_it_was(study_file, tmp_path):
    study_file.write_text(STUDY.split("tables:")[0] + "tables:\n" + "\n".join(
        STUDY.split("tables:\n")[1].split("  - id: two")[0].splitlines()) + "\n")
    study = load_study(str(study_file))
    assert list(study.datasets) == ["default"]
    results = fake_results(study, {"default": {"positive": 100, "negative": 35_000, "ignored": 900, "classes": 4}})
    path = str(tmp_path / "report.md")
    write_report(path, results, study, ["# Test"])
    text = open(path).read()
    assert "## Table t: thresholds" in text and "## Dataset" not in text and "| dataset |" not in text
    assert "Anchors of the training split at 64 px: 100 positive" in text
    assert "## Gradient norms" not in text


def test_the_largest_iou_of_two_anchors_is_below_ohems_nms_threshold():
    """The issue's geometric fact, "no two anchors overlap above IoU 0.64" in the paper's anchor set (3 scales, 3
    aspect ratios, each level's size twice its stride): the largest overlap is of the longest anchor (scale 2^(2/3),
    aspect ratio 2: r = 2 * 2^(2/3) * sqrt(2) strides long) and its neighbour one stride along, IoU (r - 1) / (r + 1);
    with one scale, of a square and the 1:2 anchor of its area at one place, IoU (1 / sqrt(2)) / (2 - 1 / sqrt(2))."""
    from keras_retinanet.study import analysis

    experiment = load_config("configs/study/base.yaml", ["data.min_size=64", "data.max_size=64"])
    longest = 2 * 2 ** (2 / 3) * 2 ** 0.5
    assert analysis.largest_anchor_iou(experiment) == pytest.approx((longest - 1) / (longest + 1), abs=1e-5)
    assert analysis.largest_anchor_iou(experiment) < 0.64
    one_scale = load_config("configs/study/base.yaml", ["data.min_size=64", "data.max_size=64",
                                                        "model.anchors.scales=[1.0]"])
    assert analysis.largest_anchor_iou(one_scale) == pytest.approx(2 ** -0.5 / (2 - 2 ** -0.5), abs=1e-5)


@pytest.mark.slow  # about 5 s, mostly the input pipeline's first pass
def test_ohem_nms_drops_anchors_only_below_the_largest_anchor_overlap(tmp_path):
    from keras_retinanet.data import read_coco
    from keras_retinanet.datasets import generate_shapes_dataset
    from keras_retinanet.losses import OHEMLoss
    from keras_retinanet.study import analysis
    from tests.tiny import spread_outputs, tiny_retinanet

    generate_shapes_dataset(str(tmp_path), splits={"train": 4}, image_size=(64, 64), min_objects=1, max_objects=2,
                            min_size=12, max_size=24)
    dataset = read_coco(str(tmp_path / "annotations" / "instances_train.json"), str(tmp_path / "train"))
    config = load_config(None, ["data.min_size=64", "data.max_size=64"])
    largest = analysis.largest_anchor_iou(config)
    model = tiny_retinanet(len(dataset.class_names), classification_loss=OHEMLoss(batch_size_per_image=64))
    spread_outputs(model)
    measured = {}
    for threshold in (0.3, largest + 0.01):
        model.classification_loss.nms_iou_threshold = threshold
        measured[threshold] = analysis.ohem_nms_drops(model, dataset, config.data, batches=2, batch_size=2)
    assert measured[0.3]["dropped_per_image"] > 0 and measured[largest + 0.01]["dropped_per_image"] == 0
    for counts in measured.values():
        assert counts["images"] == 4 and counts["selected_per_image"] == 64
    assert measured[0.3]["nms_iou_threshold"] == 0.3


SLOW_STUDY = "experiment: tiny.yaml\n" + DATASETS + """variants:
  tuned: {dataset: two, set: [model.init_from=variant:fl]}
  fl: []
  ohem: [model.classification_loss.type=ohem, model.classification_loss.alpha=null]
tables:
  - id: t
    title: thresholds
    columns: [loss, score]
    rows:
      - {variant: fl, cells: [FL, 0.05]}
      - {variant: fl, cells: [FL, 0.001], score_threshold: 0.001}
      - {variant: ohem, cells: [OHEM, 0.05]}
  - id: two
    title: from fl's model
    columns: [start]
    rows: [{variant: tuned, cells: [fl]}]
"""


@pytest.mark.slow  # trains three tiny variants: about a minute
def test_two_datasets_a_variant_from_another_thresholds_and_ohem_run_and_resume(study_file, tmp_path, monkeypatch):
    study_file.write_text(SLOW_STUDY)
    work_dir = str(tmp_path / "work")
    trained = []
    real_train = study_runner.train

    def recording(config, model_dir, **kwargs):
        trained.append(os.path.basename(model_dir))
        return real_train(config, model_dir, **kwargs)

    monkeypatch.setattr(study_runner, "train", recording)
    results = study_runner.run_study(load_study(str(study_file)), work_dir, log=lambda text: None)
    assert trained == ["fl", "tuned", "ohem"]  # fl before the variant that starts from its model
    assert os.path.exists(os.path.join(work_dir, "data", "dataset.json"))
    assert json.load(open(os.path.join(work_dir, "data", "two", "dataset.json")))["classes"] == ["circle", "square"]
    assert results.balance["two"]["classes"] == 2 and results.balance["default"]["classes"] == 4

    tuned_config = load_config(os.path.join(work_dir, "variants", "tuned", "config.yaml"))
    assert tuned_config.model.init_from == os.path.abspath(os.path.join(work_dir, "variants", "fl", "model.keras"))
    assert results.variants["tuned"]["config"]["model"]["init_from"] == tuned_config.model.init_from
    assert "loaded from" in open(os.path.join(work_dir, "variants", "tuned", "config.yaml")).read()

    fl = results.variants["fl"]["evaluations"]
    assert set(fl) == {"64", "64@0.001"}
    assert fl["64@0.001"]["AP50"] >= fl["64"]["AP50"]  # more detections kept: no recall lost
    ohem = results.variants["ohem"]["ohem_nms"]
    assert ohem["largest_anchor_iou"] < 0.64
    assert ohem["dropped_per_image"] == 0 and ohem["nms_iou_threshold"] == 0.7 and ohem["images"] == 8

    # A threshold asked for later is evaluated from the saved model; nothing trains, nothing else changes.
    study_file.write_text(SLOW_STUDY.replace("score_threshold: 0.001}", "score_threshold: 0.001}\n"
                                             "      - {variant: fl, cells: [FL, 0.01], score_threshold: 0.01}"))
    monkeypatch.setattr(study_runner, "train", None)
    again = study_runner.run_study(load_study(str(study_file)), work_dir, log=lambda text: None)
    assert set(again.variants["fl"]["evaluations"]) == {"64", "64@0.001", "64@0.01"}
    assert {key: again.variants["fl"]["evaluations"][key] for key in fl} == fl
    assert again.variants["ohem"] == results.variants["ohem"]
    report = str(tmp_path / "report.md")
    write_report(report, again, load_study(str(study_file)), ["# Slow"])
    text = open(report).read()
    assert "## Dataset two: 2 classes" in text and "### Table two: from fl's model" in text
    assert "so at 0.7 its NMS can remove no anchor" in text
