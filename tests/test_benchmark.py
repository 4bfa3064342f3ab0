"""bin/benchmark: its options, its table's ratios, and small runs of the real thing (our paths only, fresh
processes)."""

import json
import os
import subprocess
import sys

import pytest

from keras_retinanet.benchmark.report import markdown, row
from keras_retinanet.benchmark.suite import (DATA_FORMATS, BenchmarkOptionError, BenchmarkOptions, benchmark_rows,
                                             read_report)
from keras_retinanet.errors import InputError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _report(rows, peers=("torchvision", "keras_hub"), onednn=None):
    return {
        "date": "2026-12-04", "command": "bin/benchmark", "gflop_per_image": 10.0,
        "peak_gflops": {"float32": 100.0}, "setting": {"repeats": 3}, "peers": list(peers), "rows": rows,
        "machine": {"cpu": "Test CPU", "cores": 2, "avx512": True, "avx512_bf16": False, "amx": False, "gpus": [],
                    "tensorflow": "2.21.0"},
        "onednn": onednn or {},
    }


def _cells(table, path):
    line = next(line for line in table.splitlines() if line.startswith(f"| {path} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_ratios_against_the_floor_and_the_best_peer_that_did_not_fail():
    table = markdown(_report([
        row("forward", 1.2, floor=1.0, peers={"torchvision": 1.5, "keras_hub": {"error": "TypeError: bf16"}}),
        row("pipeline", 60.0, unit="images/s", peers={"torchvision": 40.0, "keras_hub": 80.0}),
        row("memory", 2.5, unit="GiB", peers={"torchvision": 3.0}),
    ]))
    assert "| path | ours | torchvision | KerasHub | floor | ours / floor | ours / best peer | note |" in table
    assert _cells(table, "forward") == ["forward", "1.200 s", "1.500 s", "fails (TypeError: bf16)", "1.000 s",
                                        "1.20", "0.80", ""]
    # A rate: the best peer is the highest.
    assert _cells(table, "pipeline")[1:7] == ["60.0 images/s", "40.0 images/s", "80.0 images/s", "-", "-", "0.75"]
    assert _cells(table, "memory")[1:3] == ["2.50 GiB", "3.00 GiB"]
    assert "Test CPU (2 cores; avx512; AMX absent; GPUs: none)" in table


def test_a_table_without_peers_has_no_empty_columns():
    table = markdown(_report([row("forward", 2.0, floor=1.0)], peers=()))
    assert "| path | ours | floor | ours / floor | ours / best peer | note |" in table
    assert _cells(table, "forward") == ["forward", "2.000 s", "1.000 s", "2.00", "-", ""]


@pytest.mark.parametrize("option, value, message", [
    ("paths", ["forward", "bogus"], "benchmark option paths: unknown bogus; choose from forward, predict"),
    ("peers", "torchvision", "benchmark option peers: expected a list of names, got 'torchvision'"),
    ("litert_quantizations", ["int4"], "benchmark option litert_quantizations: unknown int4"),
    ("repeats", 0, "benchmark option repeats: expected a whole number >= 1, got 0"),
    ("litert_threads", 1.5, "benchmark option litert_threads: expected a whole number >= 1, got 1.5"),
    ("data_format", "xml", "benchmark option data_format: unknown 'xml'; choose from coco, voc, csv, tfrecord"),
    ("runtimes_config", "no/such.yaml", "benchmark option runtimes_config: no experiment file at no/such.yaml"),
])
def test_options_reject_a_bad_value_naming_the_option(option, value, message):
    with pytest.raises(BenchmarkOptionError) as raised:
        BenchmarkOptions(**{option: value})
    assert str(raised.value).startswith(message)
    assert isinstance(raised.value, InputError)  # the command line prints it as one line


def test_options_default_to_the_command_line_flags_and_keep_lists_as_tuples():
    # The flags are read in a fresh process: defining them here could clash with another command line's.
    probe = ("import dataclasses, json\nfrom absl import flags\nfrom keras_retinanet.cli import benchmark\n"
             "names = [field.name for field in dataclasses.fields(benchmark.suite.BenchmarkOptions)]\n"
             "print(json.dumps({name: flags.FLAGS[name].default for name in names}))")
    defaults = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                                         check=True).stdout)
    options = BenchmarkOptions()
    for name, default in defaults.items():
        assert getattr(options, name) == (tuple(default) if isinstance(default, list) else default), name
    assert BenchmarkOptions(paths=["forward"], exported_models=["a.tflite"]).paths == ("forward",)


def test_the_data_formats_are_the_readers():
    from keras_retinanet.data import FORMATS

    assert DATA_FORMATS == tuple(FORMATS)


def test_the_rows_of_a_small_forward_run_without_flags():
    """The package runs without absl: ResNet-18's forward timed in a fresh process, its floor from the given one."""
    options = BenchmarkOptions(image_size=64, batch_size=2, num_classes=2, depth=18, repeats=1, paths=["forward"],
                               dtypes=["float32"], peers=[])
    floor = {"gflop_per_image": 2.0, "peak_gflops": {"float32": 100.0, "bfloat16": 200.0}}
    [forward] = benchmark_rows(options, floor)
    assert forward["path"] == "network forward, float32, batch 2" and forward["unit"] == "s"
    assert isinstance(forward["ours"], float) and forward["ours"] > 0
    assert forward["floor"] == pytest.approx(2.0 * 2 / 100.0) and forward["peers"] == {}


def test_render_reads_a_written_report(tmp_path):
    report = _report([row("forward", 1.2, floor=1.0)], peers=())
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    rendered = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "benchmark"), f"--render={path}"],
                              capture_output=True, text=True, cwd=ROOT)
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    assert rendered.stdout.strip() == markdown(read_report(path)) == markdown(report)


def test_a_bad_option_is_one_line_of_the_command_line():
    process = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "benchmark"), "--paths=forward,bogus"],
                             capture_output=True, text=True, cwd=ROOT)
    assert process.returncode == 1
    assert process.stderr.strip().splitlines()[-1].startswith("error: benchmark option paths: unknown bogus")


@pytest.mark.slow  # minutes on 2 cores: `make test-slow`, which CI runs too
def test_a_small_run_times_predict_and_lists_the_onednn_kernels(tmp_path):
    report_path = tmp_path / "report.json"
    process = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bin", "benchmark"), "--image_size=128", "--num_classes=3",
         "--paths=predict,onednn", "--dtypes=float32", "--peers=", "--repeats=1", f"--json={report_path}"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert process.returncode == 0, process.stderr[-2000:]
    report = json.loads(report_path.read_text())
    assert report["gflop_per_image"] > 1 and report["peak_gflops"]["float32"] > 1
    predict, decoding = report["rows"]
    assert predict["path"].startswith("predict") and predict["ours"] > decoding["ours"] > 0
    assert predict["floor"] > 0
    kernels = report["onednn"]["float32"]
    convolutions = [k for k in kernels if k["kind"] == "convolution"]
    assert convolutions and sum(k["calls"] for k in convolutions) >= 2 * 50  # warm-up and timed forward
    assert abs(sum(k["share"] for k in kernels) - 1) < 1e-6
    # stdout is the table alone, as --render prints it again from the JSON.
    rendered = subprocess.run([sys.executable, os.path.join(ROOT, "bin", "benchmark"), f"--render={report_path}"],
                              capture_output=True, text=True, cwd=ROOT)
    assert rendered.stdout.strip() == process.stdout.strip()
    assert "oneDNN kernels of our network forward, float32" in rendered.stdout
