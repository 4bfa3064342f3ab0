"""`bin/benchmark`'s run: the options (`BenchmarkOptions`), the cases each selected path times, their rows, and the
report that `report.markdown` prints.

Each case runs in a fresh process (`timing.run_isolated`), announced on stderr, so that stdout holds only the table.
This module loads no TensorFlow itself: the command line's `--help` imports it for its choices.
"""

import dataclasses
import datetime
import json
import os
import sys
import tempfile
from typing import Optional

from keras_retinanet.benchmark import dataset_scale, fit_budget, ours
from keras_retinanet.benchmark import peers as peer_cases
from keras_retinanet.benchmark.report import row
from keras_retinanet.benchmark.timing import Setting, run_isolated
from keras_retinanet.errors import InputError

PATHS = ("forward", "predict", "train", "train_xla", "serving", "litert", "pipeline", "labelling", "onednn")
# Paths run only when named: reading, statistics and anchor fitting of a generated COCO-sized annotation file;
# accuracy after the same training time as torchvision's RetinaNet (minutes each); every runtime we export to.
EXTRA_PATHS = ("dataset_scale", "fit_budget", "runtimes")
DTYPES = ("float32", "bfloat16")
QUANTIZATIONS = ("float32", "float16", "int8")
RUNTIMES = ("tensorflow", *ours.RUNTIME_EXPORTS)  # the runtimes path's: TensorFlow's SavedModel, then our exports
DATA_FORMATS = ("coco", "voc", "csv", "tfrecord")  # `keras_retinanet.data.FORMATS`, which loads TensorFlow


class BenchmarkOptionError(InputError, ValueError):
    """A benchmark option out of its allowed values; the message names the option."""


@dataclasses.dataclass(frozen=True)
class BenchmarkOptions:
    """What `run_benchmark` times, as `bin/benchmark`'s flags of the same names set it (see its `--help`).

    The lists (`paths`, `dtypes`, `peers`, `litert_quantizations`, `runtimes`, `exported_models`) are kept as
    tuples; every value is checked here, and a bad one is a `BenchmarkOptionError` naming the option.
    """

    image_size: int = Setting.image_size
    batch_size: int = Setting.batch_size
    train_batch_size: int = Setting.train_batch_size
    num_classes: int = Setting.num_classes
    depth: int = Setting.depth
    repeats: int = Setting.repeats
    paths: tuple = PATHS
    dtypes: tuple = DTYPES
    peers: tuple = peer_cases.PEERS
    data_annotations: str = ""
    data_images: str = ""
    data_format: str = "csv"
    pipeline_batches: int = 20
    fit_steps: int = 4
    litert_quantizations: tuple = QUANTIZATIONS
    litert_threads: Optional[int] = None
    dataset_images: int = dataset_scale.COCO_IMAGES
    dataset_boxes: int = dataset_scale.COCO_BOXES
    dataset_classes: int = dataset_scale.COCO_CLASSES
    fit_config: str = ""
    fit_set: tuple = ()
    fit_minutes: float = 10.0
    fit_peer_depth: int = 18
    runtimes_config: str = ""
    runtimes: tuple = RUNTIMES
    exported_models: tuple = ()

    def __post_init__(self):
        for name, allowed in (("paths", PATHS + EXTRA_PATHS), ("dtypes", DTYPES), ("peers", peer_cases.PEERS),
                              ("litert_quantizations", QUANTIZATIONS), ("runtimes", RUNTIMES),
                              ("exported_models", None), ("fit_set", None)):
            object.__setattr__(self, name, _names(name, getattr(self, name), allowed))
        for name in ("image_size", "batch_size", "train_batch_size", "num_classes", "depth", "repeats",
                     "pipeline_batches", "fit_steps", "litert_threads", "dataset_images", "dataset_boxes",
                     "dataset_classes", "fit_peer_depth"):
            value = getattr(self, name)
            if value is None and name == "litert_threads":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise BenchmarkOptionError(f"benchmark option {name}: expected a whole number >= 1, got {value!r}")
        if "fit_budget" in self.paths and not self.fit_config:
            raise BenchmarkOptionError("benchmark option fit_config: the fit_budget path needs an experiment file")
        if self.runtimes_config and not os.path.isfile(self.runtimes_config):
            raise BenchmarkOptionError(f"benchmark option runtimes_config: no experiment file at "
                                       f"{self.runtimes_config}")
        if isinstance(self.fit_minutes, bool) or not isinstance(self.fit_minutes, (int, float)) \
                or not 0 < self.fit_minutes < float("inf"):
            raise BenchmarkOptionError(f"benchmark option fit_minutes: expected a positive number of minutes, got "
                                       f"{self.fit_minutes!r}")
        if self.data_format not in DATA_FORMATS:
            raise BenchmarkOptionError(f"benchmark option data_format: unknown {self.data_format!r}; choose from "
                                       f"{', '.join(DATA_FORMATS)}")

    @property
    def setting(self):
        """The `timing.Setting` every case measures on."""
        return Setting(self.image_size, self.batch_size, self.train_batch_size, self.num_classes, self.depth,
                       repeats=self.repeats)


def _names(option, values, allowed=None):
    """`values` (a list of strings) as a tuple, each of `allowed` if given; else a `BenchmarkOptionError`."""
    if not isinstance(values, (list, tuple)) or not all(isinstance(value, str) for value in values):
        raise BenchmarkOptionError(f"benchmark option {option}: expected a list of names, got {values!r}")
    unknown = sorted(set(values) - set(allowed)) if allowed is not None else []
    if unknown:
        raise BenchmarkOptionError(f"benchmark option {option}: unknown {', '.join(unknown)}; choose from "
                                   f"{', '.join(allowed)}")
    return tuple(values)


@dataclasses.dataclass(frozen=True)
class _Run:
    """What every path's rows are measured with: the options, the floor (`ours.floor`), the peers that are
    installed, and the split of the pipeline paths (None without them)."""

    options: BenchmarkOptions
    floor: dict
    peers: tuple
    split: object

    @property
    def setting(self):
        return self.options.setting

    def floor_seconds(self, dtype, batch, passes=1):
        """The hardware's floor of `passes` forwards of `batch` images in `dtype`."""
        return passes * self.floor["gflop_per_image"] * batch / self.floor["peak_gflops"][dtype]


def _measure(name, case, *args):
    """`case(*args)` timed in a fresh process (torch imported first for torchvision's), announced on stderr."""
    print(f"timing {name} ...", file=sys.stderr, flush=True)
    result = run_isolated(case, *args, preload=("torch", "torchvision") if name.startswith("torchvision") else ())
    print(f"  {name}: {result}", file=sys.stderr, flush=True)
    return result


def _seconds(result, key="seconds"):
    """The figure `key` of a case's result, or the result itself where the case failed (the table says so)."""
    return result.get(key) if "error" not in result else result


def _forward_rows(run, dtype):
    setting = run.setting
    timed = {"torchvision": peer_cases.torchvision_forward, "keras_hub": peer_cases.keras_hub_forward}
    return [row(
        f"network forward, {dtype}, batch {setting.batch_size}",
        _seconds(_measure(f"our forward {dtype}", ours.forward, setting, dtype)),
        floor=run.floor_seconds(dtype, setting.batch_size),
        peers={p: _seconds(_measure(f"{p} forward {dtype}", timed[p], setting, dtype)) for p in run.peers},
    )]


def _peer_predictions(run, dtype):
    """{peer: predict seconds}; KerasHub's is the best of jit_compile off and on."""
    results = {}
    if "torchvision" in run.peers:
        results["torchvision"] = _seconds(
            _measure(f"torchvision predict {dtype}", peer_cases.torchvision_predict, run.setting, dtype))
    if "keras_hub" in run.peers:
        tries = [_seconds(_measure(f"keras_hub predict {dtype} jit={jit}", peer_cases.keras_hub_predict,
                                   run.setting, dtype, jit)) for jit in (False, True)]
        numbers = [t for t in tries if isinstance(t, float)]
        results["keras_hub"] = min(numbers) if numbers else tries[0]
    return results


def _predict_rows(run, dtype):
    setting = run.setting
    ours_predict = _measure(f"our predict {dtype}", ours.predict, setting, dtype)
    rows = [row(
        f"predict (network, decoding, top-k, NMS), {dtype}, batch {setting.batch_size}",
        _seconds(ours_predict), floor=run.floor_seconds(dtype, setting.batch_size),
        peers=_peer_predictions(run, dtype),
        note="KerasHub: best of jit_compile off and on" if "keras_hub" in run.peers else "",
    )]
    if "error" not in ours_predict:
        share = ours_predict["decode_seconds"] / ours_predict["seconds"]
        rows.append(row(f"decoding, top-k and NMS alone, {dtype}", ours_predict["decode_seconds"],
                        note=f"{share:.1%} of our predict"))
    return rows


def _train_rows(run, dtype, jit):
    """The train step's row (`jit`: XLA); without XLA, torchvision's beside it and, in float32, peak memory."""
    setting = run.setting
    policy = ours.POLICY_OF_DTYPE[dtype]
    ours_train = _measure(f"our train {dtype} jit={jit}", ours.train_step, setting, dtype, jit)
    peer_results, peer_memory = {}, {}
    if not jit and "torchvision" in run.peers:
        tv_train = _measure(f"torchvision train {dtype}", peer_cases.torchvision_train, setting, dtype)
        peer_results["torchvision"] = _seconds(tv_train)
        if "error" not in tv_train:
            peer_memory["torchvision"] = tv_train["peak_rss_bytes"] / 2**30
    rows = [row(
        f"train step, {policy}, batch {setting.train_batch_size}, {'XLA' if jit else 'no XLA'}",
        _seconds(ours_train), floor=run.floor_seconds(dtype, setting.train_batch_size, passes=3),
        peers=peer_results, note="torchvision: autocast" if dtype == "bfloat16" and peer_results else "",
    )]
    if not jit and dtype == "float32":
        rows.append(row(f"peak memory (RSS) of the float32 train-step process, batch {setting.train_batch_size}",
                        ours_train.get("peak_rss_bytes", 0) / 2**30, unit="GiB", peers=peer_memory))
    return rows


def _serving_rows(run):
    setting = run.setting
    served = _measure("our SavedModel serving_default", ours.serving, setting)
    note = ""
    if "error" not in served:
        note = f"{served['seconds'] / served['predict_seconds']:.2f} x predict in the same process"
    return [row(f"SavedModel serving_default, float32, uint8 batch {setting.batch_size}", _seconds(served),
                note=note)]


def _litert_rows(run):
    """Our detector's LiteRT models in each of `litert_quantizations`."""
    options, setting = run.options, run.setting
    threads = options.litert_threads or len(os.sched_getaffinity(0))
    rows = []
    if options.litert_quantizations:
        timed = _measure("our LiteRT models", ours.litert, setting, list(options.litert_quantizations), threads)
        for quantization in options.litert_quantizations:
            result = timed.get(quantization, timed)
            note = ""
            if "error" not in result:
                note = (f"{result['megabytes']:.1f} MB; {result['seconds'] / timed['predict_seconds']:.2f} x our "
                        "float32 predict in the same process" + ("; floor: float32's" if quantization == "int8"
                                                                  else ""))
            rows.append(row(f"LiteRT interpreter (XNNPACK, {threads} threads), {quantization}, uint8 image",
                            _seconds(result), floor=run.floor_seconds("float32", 1), note=note))
    return rows


def _pipeline_rows(run):
    """The input pipeline's images/s, and a fit step on it beside the same batches cached."""
    options, setting = run.options, run.setting
    source = options.data_annotations or "generated JPEG photos 1024 x 768"
    piped = _measure("input pipeline", ours.input_pipeline, run.split, options.pipeline_batches)
    rows = [row("input pipeline: decode, resize to 800/1333, flip, pad, batch of 2",
                _seconds(piped, "images_per_second"), unit="images/s", note=source)]
    bound = _measure("fit with the pipeline and cached", ours.fit_input_bound, setting, run.split, "bfloat16",
                     options.fit_steps)
    if "error" not in bound:
        rows.append(row(f"fit step, mixed_bfloat16, 800/1333, batch {setting.train_batch_size}, on the pipeline",
                        bound["pipeline_seconds"],
                        note=f"{bound['cached_seconds']:.3f} s on the same batches cached in memory"))
    return rows


def _labelling_rows(run):
    labelled = _measure("anchor labelling", ours.labelling, run.setting)
    if "error" in labelled:
        return []
    return [row(f"anchor labelling of a batch of {run.setting.train_batch_size} in the model (XLA)",
                labelled["in_model_seconds"],
                note=f"{labelled['tf_data_seconds']:.3f} s in tf.data (per image, parallel)")]


def _dataset_scale_rows(run):
    """Reading (image headers only), statistics and anchor fitting of a generated COCO-sized annotation file."""
    options = run.options
    sized = f"{options.dataset_images} images, {options.dataset_boxes} boxes, {options.dataset_classes} classes"
    result = _measure("dataset scale", dataset_scale.dataset_scale, options.dataset_images, options.dataset_boxes,
                      options.dataset_classes)
    if "error" in result:
        return [row(f"read a generated COCO-format file ({sized})", result)]
    return [
        row(f"read a generated COCO-format file ({sized}), image headers", result["read_seconds"],
            note=f"{result['read_peak_rss_bytes'] / 2**30:.2f} GiB peak memory after reading"),
        row("dataset statistics (bin/inspect_dataset's: sizes, anchor coverage)", result["statistics_seconds"],
            note=f"{result['boxes']} boxes"),
        row("anchor fitting (bin/fit_anchors)", result["fit_seconds"],
            note=f"coverage {100 * result['coverage_before']:.1f}% -> {100 * result['coverage_after']:.1f}%"),
        row("peak memory (RSS) of reading, statistics and fitting", result["peak_rss_bytes"] / 2**30, unit="GiB"),
    ]


def _runtimes_rows(run):
    """The detector of `runtimes_config` exported to each of `runtimes`, each export and each timing in a fresh
    process (a runtime's package absent, or a failed export, is a row saying so), beside TensorFlow's SavedModel;
    then the `exported_models` files."""
    options, setting = run.options, run.setting
    threads = options.litert_threads or len(os.sched_getaffinity(0))
    model = options.runtimes_config or f"ResNet-{setting.depth}"
    timed = {}
    if "tensorflow" in options.runtimes:
        timed["TensorFlow SavedModel float32"] = _measure("TensorFlow SavedModel", ours.saved_model_runtime, setting,
                                                          options.runtimes_config, threads)
    with tempfile.TemporaryDirectory() as folder:
        for runtime in [runtime for runtime in options.runtimes if runtime != "tensorflow"]:
            name = ours.RUNTIME_EXPORTS[runtime][0]
            exported = _measure(f"export to {name}", ours.export_runtime, setting, options.runtimes_config, runtime,
                                folder)
            if "error" in exported:
                timed[name] = exported
                continue
            files = _measure(name, ours.exported_files, [exported["path"]], threads, setting.repeats)
            timed[name] = files.get(exported["path"], files)  # or the error of a failed timing
    tensorflow = timed.get("TensorFlow SavedModel float32", {"error": "not timed"})
    rows = [row(f"{name}, {model}, {setting.image_size} px, {threads} threads", _seconds(result),
                note=_runtime_note(result, tensorflow)) for name, result in timed.items()]
    if options.exported_models:
        files = _measure("exported model files", ours.exported_files, list(options.exported_models), threads,
                         setting.repeats, setting.image_size)
        for path in options.exported_models:
            result = files.get(path, files)
            size = "x".join(map(str, result.get("input_size", ())))
            name = (f"SavedModel {path}" if os.path.isdir(path) else os.path.basename(path))
            rows.append(row(f"{name}, {size} px, {threads} threads", _seconds(result),
                            note=_runtime_note(result, tensorflow=None)))
    return rows


def _runtime_note(result, tensorflow):
    """A timed export's file size, its ratio to TensorFlow's SavedModel of the same detector where given, and
    whether a framework was loaded."""
    if "error" in result:
        return ""
    note = f"{result['megabytes']:.1f} MB"
    if tensorflow and "error" not in tensorflow and result is not tensorflow:
        note += f"; {result['seconds'] / tensorflow['seconds']:.2f} x TensorFlow"
    if result.get("frameworks_loaded"):
        note += f"; {' and '.join(result['frameworks_loaded'])} loaded in its process"
    return note


def _fit_budget_rows(run):
    """AP after the same training time as torchvision's RetinaNet, on the data of `fit_config`."""
    options = run.options
    budget = fit_budget.FitBudget(options.fit_config, options.fit_minutes, options.fit_peer_depth, options.fit_set)
    print(f"training ours and torchvision's for {budget.minutes:g} minutes each ...", file=sys.stderr, flush=True)
    return fit_budget.rows(fit_budget.compare(budget), budget)


# The paths in the table's order: those timed in each dtype, then the others.
_PATHS_IN_EACH_DTYPE = (("forward", _forward_rows), ("predict", _predict_rows),
                        ("train", lambda run, dtype: _train_rows(run, dtype, jit=False)),
                        ("train_xla", lambda run, dtype: _train_rows(run, dtype, jit=True)))
_OTHER_PATHS = (("serving", _serving_rows), ("litert", _litert_rows), ("pipeline", _pipeline_rows),
                ("labelling", _labelling_rows), ("dataset_scale", _dataset_scale_rows),
                ("fit_budget", _fit_budget_rows), ("runtimes", _runtimes_rows))


def benchmark_rows(options, floor, peers=(), split=None):
    """The table's rows (`report.row`) of the paths `options` selects (the onednn path has no rows: see
    `onednn_kernels`), each case timed in a fresh process. `floor` is `ours.floor`'s result, `peers` the peers to
    time (installed ones), `split` the `SplitConfig` of the pipeline path."""
    run = _Run(options, floor, tuple(peers), split)
    rows = []
    for dtype in options.dtypes:
        for path, rows_of in _PATHS_IN_EACH_DTYPE:
            if path in options.paths:
                rows += rows_of(run, dtype)
    for path, rows_of in _OTHER_PATHS:
        if path in options.paths:
            rows += rows_of(run)
    return rows


def onednn_kernels(options):
    """{dtype: oneDNN kernel summary} of our forward, if the onednn path is selected."""
    from keras_retinanet.benchmark.onednn import kernel_summary

    if "onednn" not in options.paths:
        return {}
    summaries = {}
    for dtype in options.dtypes:
        print(f"timing oneDNN kernels of our forward {dtype} ...", file=sys.stderr, flush=True)
        summaries[dtype] = kernel_summary(options.setting, dtype)
    return summaries


def installed_peers(options):
    """The peers of `options` that are installed; the others are said on stderr."""
    peers = [peer for peer in options.peers if peer_cases.installed(peer)]
    for peer in sorted(set(options.peers) - set(peers)):
        print(f"{peer} is not installed: not timed", file=sys.stderr)
    return peers


def run_benchmark(options, command="bin/benchmark"):
    """Times what `options` selects and returns the report (what `--json` writes, `report.markdown` prints):
    date, `command`, machine, floor, setting, peers, rows and oneDNN kernels."""
    from keras_retinanet.config import SplitConfig

    setting = options.setting
    peers = installed_peers(options)
    floor = _measure("the floor", ours.floor, setting)
    if "error" in floor:
        raise RuntimeError(f"measuring the floor failed: {floor['error']}")
    with tempfile.TemporaryDirectory() as folder:
        if options.data_annotations:
            split = SplitConfig(options.data_annotations, options.data_images, options.data_format)
        elif "pipeline" in options.paths:
            split = ours.synthetic_photos(folder)
        else:
            split = None
        rows = benchmark_rows(options, floor, peers, split)
    return {
        "date": datetime.date.today().isoformat(),
        "command": command,
        "machine": floor["machine"],
        "gflop_per_image": floor["gflop_per_image"],
        "peak_gflops": floor["peak_gflops"],
        "setting": vars(setting),
        "peers": peers,
        "rows": rows,
        "onednn": onednn_kernels(options),
    }


def write_report(report, path):
    """Writes `report` (`run_benchmark`'s) as JSON to `path`."""
    with open(path, "w") as file:
        json.dump(report, file, indent=1)


def read_report(path):
    """The report a `--json` run wrote to `path`."""
    with open(path) as file:
        return json.load(file)
