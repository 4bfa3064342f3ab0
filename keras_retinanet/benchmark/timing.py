"""Medians of timed runs, and cases run in fresh processes."""

import dataclasses
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time


@dataclasses.dataclass(frozen=True)
class Setting:
    """What every case measures on: square images of `image_size`, ResNet-`depth`, `num_classes` classes."""

    image_size: int = 640
    batch_size: int = 1
    train_batch_size: int = 2
    num_classes: int = 80
    depth: int = 50
    max_boxes: int = 50
    repeats: int = 5


def median_seconds(function, repeats, warmups=1):
    """Median wall time of `repeats` calls of `function` after `warmups` untimed ones (tracing, compilation)."""
    for _ in range(warmups):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_bytes():
    """This process's peak resident memory so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# The child imports `preload` first: torch or torchvision imported after TensorFlow crashes the process with a
# segmentation fault (TF 2.21, torch 2.14, torchvision 0.29 here).
_CHILD = """
import importlib, sys
for name in sys.argv[2:]:
    importlib.import_module(name)
from keras_retinanet.benchmark.timing import _run_child
_run_child(sys.argv[1])
"""


def _run_child(path):
    with open(path, "rb") as file:
        case, args = pickle.load(file)
    try:
        result = case(*args)
        result["peak_rss_bytes"] = peak_rss_bytes()
    except Exception as error:  # a peer that fails on a path is a result, not the end of the run
        first_line = (str(error).strip().splitlines() or [""])[0]
        result = {"error": f"{type(error).__name__}: {first_line[:200]}"}
    with open(path + ".result", "wb") as file:
        pickle.dump(result, file)


def run_isolated(case, *args, preload=()):
    """`case(*args)` (a dict of figures) in a fresh Python process that first imports the modules `preload`, with
    that process's peak RSS added. A case that raises or a process that dies gives {"error": "..."}. The child's
    output goes to stderr, so that stdout holds only the table."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "case.pickle")
        with open(path, "wb") as file:
            pickle.dump((case, args), file)
        process = subprocess.run([sys.executable, "-c", _CHILD, path, *preload], stdout=sys.stderr)
        if not os.path.exists(path + ".result"):
            return {"error": f"the process died (exit status {process.returncode})"}
        with open(path + ".result", "rb") as file:
            return pickle.load(file)
