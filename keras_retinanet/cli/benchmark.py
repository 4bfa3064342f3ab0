"""Speed and memory of our detector beside torchvision's and KerasHub's RetinaNet, and beside the hardware's floor.

Every figure is the median of --repeats timed runs after a warm-up run, each path measured in a fresh process, all
in one run so that the ratios hold on a shared machine. The floor is the network's FLOPs (from TensorFlow's graph
profiler; a training step counts 3 forwards) over the matmul peak this run measures in each dtype. Peers are timed
when installed (`pip install -e ".[torch]"` for torchvision, `".[keras_hub]"` for KerasHub) on the same random
images and boxes, ResNet-50, the same image size. The output is a Markdown table (the README's Speed section);
--json also writes it as data, --render prints the table of such a file again.

The litert path exports our detector to LiteRT (float32, float16, int8) and times LiteRT's interpreter on it, and
on any exported --litert_models. The input pipeline is timed on --data_annotations (any format bin/train reads), or
on generated JPEG photos. The onednn path lists the oneDNN kernels that ran our forward and their share of its
time: whether the convolutions used AMX where the CPU has it, and which passes over memory (reorders, batch norms)
were not fused into them.
"""

import datetime
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from keras_retinanet.cli import run_program  # noqa: E402

PATHS = ("forward", "predict", "train", "train_xla", "serving", "litert", "pipeline", "labelling", "onednn")
QUANTIZATIONS = ("float32", "float16", "int8")
DTYPES = ("float32", "bfloat16")

FLAGS = flags.FLAGS
flags.DEFINE_integer("image_size", 640, "Square input size in pixels.")
flags.DEFINE_integer("batch_size", 1, "Images per batch for forward, predict and serving.")
flags.DEFINE_integer("train_batch_size", 2, "Images per batch for training steps.")
flags.DEFINE_integer("num_classes", 80, "Number of classes.")
flags.DEFINE_integer("depth", 50, "ResNet depth (the peers are timed with 50 only).")
flags.DEFINE_integer("repeats", 5, "Timed runs per figure (the median is reported).")
flags.DEFINE_list("paths", list(PATHS), f"What to time, of {', '.join(PATHS)}.")
flags.DEFINE_list("dtypes", list(DTYPES), "Compute dtypes: float32, bfloat16 (mixed_bfloat16 for us).")
flags.DEFINE_list("peers", ["torchvision", "keras_hub"], "Peers to time where installed: torchvision, keras_hub.")
flags.DEFINE_string("data_annotations", "", "Annotations of real photos for the pipeline paths (default: generated).")
flags.DEFINE_string("data_images", "", "Image folder of --data_annotations.")
flags.DEFINE_enum("data_format", "csv", ["coco", "voc", "csv", "tfrecord"], "Format of --data_annotations.")
flags.DEFINE_integer("pipeline_batches", 20, "Batches of 2 timed through the input pipeline.")
flags.DEFINE_integer("fit_steps", 4, "fit steps timed with the pipeline and with the same batches cached.")
flags.DEFINE_list("litert_quantizations", list(QUANTIZATIONS), "LiteRT models the litert path exports and times.")
flags.DEFINE_list("litert_models", [], "Exported .tflite models the litert path times too (e.g. the demo's).")
flags.DEFINE_integer("litert_threads", None, "Interpreter threads (default: the cores this process may use).")
flags.DEFINE_string("json", "", "Also write the report to this JSON file.")
flags.DEFINE_string("render", "", "Print the table of a report written by --json, and time nothing.")


def _check_flags():
    for name, values, allowed in (("paths", FLAGS.paths, PATHS), ("dtypes", FLAGS.dtypes, DTYPES),
                                  ("peers", FLAGS.peers, ("torchvision", "keras_hub")),
                                  ("litert_quantizations", FLAGS.litert_quantizations, QUANTIZATIONS)):
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise ValueError(f"--{name}: unknown {', '.join(unknown)}; choose from {', '.join(allowed)}")


def _measure(name, case, *args):
    from keras_retinanet.benchmark.timing import run_isolated

    print(f"timing {name} ...", file=sys.stderr, flush=True)
    result = run_isolated(case, *args, preload=("torch", "torchvision") if name.startswith("torchvision") else ())
    print(f"  {name}: {result}", file=sys.stderr, flush=True)
    return result


def _seconds(result, key="seconds"):
    return result.get(key) if "error" not in result else result


def _rows(setting, floor, peers, split):
    """Runs the selected cases and returns the table's rows."""
    from keras_retinanet.benchmark import ours
    from keras_retinanet.benchmark import peers as peer_cases
    from keras_retinanet.benchmark.report import row

    gflop = floor["gflop_per_image"]
    peak = floor["peak_gflops"]
    rows = []

    def floor_seconds(dtype, batch, passes=1):
        return passes * gflop * batch / peak[dtype]

    for dtype in FLAGS.dtypes:
        if "forward" in FLAGS.paths:
            timed = {"torchvision": peer_cases.torchvision_forward, "keras_hub": peer_cases.keras_hub_forward}
            rows.append(row(
                f"network forward, {dtype}, batch {setting.batch_size}",
                _seconds(_measure(f"our forward {dtype}", ours.forward, setting, dtype)),
                floor=floor_seconds(dtype, setting.batch_size),
                peers={p: _seconds(_measure(f"{p} forward {dtype}", timed[p], setting, dtype)) for p in peers},
            ))
        if "predict" in FLAGS.paths:
            ours_predict = _measure(f"our predict {dtype}", ours.predict, setting, dtype)
            peer_results = {}
            if "torchvision" in peers:
                peer_results["torchvision"] = _seconds(
                    _measure(f"torchvision predict {dtype}", peer_cases.torchvision_predict, setting, dtype))
            if "keras_hub" in peers:  # its best of jit_compile off and on
                tries = [_seconds(_measure(f"keras_hub predict {dtype} jit={jit}", peer_cases.keras_hub_predict,
                                           setting, dtype, jit)) for jit in (False, True)]
                numbers = [t for t in tries if isinstance(t, float)]
                peer_results["keras_hub"] = min(numbers) if numbers else tries[0]
            rows.append(row(
                f"predict (network, decoding, top-k, NMS), {dtype}, batch {setting.batch_size}",
                _seconds(ours_predict), floor=floor_seconds(dtype, setting.batch_size), peers=peer_results,
                note="KerasHub: best of jit_compile off and on" if "keras_hub" in peers else "",
            ))
            if "error" not in ours_predict:
                share = ours_predict["decode_seconds"] / ours_predict["seconds"]
                rows.append(row(f"decoding, top-k and NMS alone, {dtype}", ours_predict["decode_seconds"],
                                note=f"{share:.1%} of our predict"))
        for path, jit in (("train", False), ("train_xla", True)):
            if path not in FLAGS.paths:
                continue
            policy = "mixed_bfloat16" if dtype == "bfloat16" else "float32"
            ours_train = _measure(f"our train {dtype} jit={jit}", ours.train_step, setting, dtype, jit)
            peer_results, peer_memory = {}, {}
            if not jit and "torchvision" in peers:
                tv_train = _measure(f"torchvision train {dtype}", peer_cases.torchvision_train, setting, dtype)
                peer_results["torchvision"] = _seconds(tv_train)
                if "error" not in tv_train:
                    peer_memory["torchvision"] = tv_train["peak_rss_bytes"] / 2**30
            rows.append(row(
                f"train step, {policy}, batch {setting.train_batch_size}, {'XLA' if jit else 'no XLA'}",
                _seconds(ours_train), floor=floor_seconds(dtype, setting.train_batch_size, passes=3),
                peers=peer_results, note="torchvision: autocast" if dtype == "bfloat16" and peer_results else "",
            ))
            if not jit and dtype == "float32":
                rows.append(row(f"peak memory (RSS) of the float32 train-step process, batch "
                                f"{setting.train_batch_size}", ours_train.get("peak_rss_bytes", 0) / 2**30,
                                unit="GiB", peers=peer_memory))
    if "serving" in FLAGS.paths:
        served = _measure("our SavedModel serving_default", ours.serving, setting)
        note = ""
        if "error" not in served:
            note = f"{served['seconds'] / served['predict_seconds']:.2f} x predict in the same process"
        rows.append(row(f"SavedModel serving_default, float32, uint8 batch {setting.batch_size}",
                        _seconds(served), note=note))
    if "litert" in FLAGS.paths:
        rows += _litert_rows(setting, floor_seconds("float32", 1))
    if "pipeline" in FLAGS.paths:
        source = FLAGS.data_annotations or "generated JPEG photos 1024 x 768"
        piped = _measure("input pipeline", ours.input_pipeline, split, FLAGS.pipeline_batches)
        rows.append(row("input pipeline: decode, resize to 800/1333, flip, pad, batch of 2",
                        _seconds(piped, "images_per_second"), unit="images/s", note=source))
        bound = _measure("fit with the pipeline and cached", ours.fit_input_bound, setting, split, "bfloat16",
                         FLAGS.fit_steps)
        if "error" not in bound:
            rows.append(row(f"fit step, mixed_bfloat16, 800/1333, batch {setting.train_batch_size}, on the pipeline",
                            bound["pipeline_seconds"], note=f"{bound['cached_seconds']:.3f} s on the same batches "
                            "cached in memory"))
    if "labelling" in FLAGS.paths:
        labelled = _measure("anchor labelling", ours.labelling, setting)
        if "error" not in labelled:
            rows.append(row(f"anchor labelling of a batch of {setting.train_batch_size} in the model (XLA)",
                            labelled["in_model_seconds"],
                            note=f"{labelled['tf_data_seconds']:.3f} s in tf.data (per image, parallel)"))
    return rows


def _litert_rows(setting, float32_floor):
    """Rows of the litert path: our detector's LiteRT models, and the --litert_models files."""
    from keras_retinanet.benchmark import ours
    from keras_retinanet.benchmark.report import row

    threads = FLAGS.litert_threads or len(os.sched_getaffinity(0))
    rows = []
    if FLAGS.litert_quantizations:
        timed = _measure("our LiteRT models", ours.litert, setting, FLAGS.litert_quantizations, threads)
        for quantization in FLAGS.litert_quantizations:
            result = timed.get(quantization, timed)
            note = ""
            if "error" not in result:
                note = (f"{result['megabytes']:.1f} MB; {result['seconds'] / timed['predict_seconds']:.2f} x our "
                        "float32 predict in the same process" + ("; floor: float32's" if quantization == "int8"
                                                                  else ""))
            rows.append(row(f"LiteRT interpreter (XNNPACK, {threads} threads), {quantization}, uint8 image",
                            _seconds(result), floor=float32_floor, note=note))
    if FLAGS.litert_models:
        timed = _measure("LiteRT model files", ours.litert_files, FLAGS.litert_models, threads, setting.repeats)
        for path in FLAGS.litert_models:
            result = timed.get(path, timed)
            note = f"{result['megabytes']:.1f} MB" if "error" not in result else ""
            rows.append(row(f"LiteRT interpreter ({threads} threads), {os.path.basename(path)}", _seconds(result),
                            note=note))
    return rows


def _onednn_kernels(setting):
    """{dtype: oneDNN kernel summary} of our forward, if the onednn path is selected."""
    from keras_retinanet.benchmark.onednn import kernel_summary

    if "onednn" not in FLAGS.paths:
        return {}
    summaries = {}
    for dtype in FLAGS.dtypes:
        print(f"timing oneDNN kernels of our forward {dtype} ...", file=sys.stderr, flush=True)
        summaries[dtype] = kernel_summary(setting, dtype)
    return summaries


def main(argv):
    del argv
    from keras_retinanet.benchmark.report import markdown

    if FLAGS.render:
        with open(FLAGS.render) as file:
            print(markdown(json.load(file)))
        return
    _check_flags()
    from keras_retinanet.benchmark import ours
    from keras_retinanet.benchmark.peers import installed
    from keras_retinanet.benchmark.timing import Setting
    from keras_retinanet.config import SplitConfig

    setting = Setting(FLAGS.image_size, FLAGS.batch_size, FLAGS.train_batch_size, FLAGS.num_classes, FLAGS.depth,
                      repeats=FLAGS.repeats)
    peers = [peer for peer in FLAGS.peers if installed(peer)]
    for peer in sorted(set(FLAGS.peers) - set(peers)):
        print(f"{peer} is not installed: not timed", file=sys.stderr)
    floor = _measure("the floor", ours.floor, setting)
    if "error" in floor:
        raise RuntimeError(f"measuring the floor failed: {floor['error']}")
    with tempfile.TemporaryDirectory() as folder:
        if FLAGS.data_annotations:
            split = SplitConfig(FLAGS.data_annotations, FLAGS.data_images, FLAGS.data_format)
        elif "pipeline" in FLAGS.paths:
            split = ours.synthetic_photos(folder)
        else:
            split = None
        rows = _rows(setting, floor, peers, split)
    report = {
        "date": datetime.date.today().isoformat(),
        "command": " ".join(["bin/benchmark", *sys.argv[1:]]),
        "machine": floor["machine"],
        "gflop_per_image": floor["gflop_per_image"],
        "peak_gflops": floor["peak_gflops"],
        "setting": vars(setting),
        "peers": peers,
        "rows": rows,
        "onednn": _onednn_kernels(setting),
    }
    if FLAGS.json:
        with open(FLAGS.json, "w") as file:
            json.dump(report, file, indent=1)
    print(markdown(report))


def run():
    run_program(main, __name__)


if __name__ == "__main__":
    run()
