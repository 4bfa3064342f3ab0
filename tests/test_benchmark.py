"""bin/benchmark: its table's ratios, and a small run of the real thing (our paths only, fresh processes)."""

import json
import os
import subprocess
import sys

import pytest

from keras_retinanet.benchmark.report import markdown, row

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
