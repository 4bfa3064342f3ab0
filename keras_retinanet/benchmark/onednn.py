"""Which oneDNN kernels ran our network, and for how long: on a CPU with AMX, `amx` in a convolution's
implementation name means it used the tile units, `avx512_core_bf16` or `avx512_core` that it did not; reorders and
batch normalisations are passes over memory that the convolutions did not absorb."""

import collections
import os
import pickle
import subprocess
import sys

_FORWARD = """
import pickle, sys
from keras_retinanet.benchmark import ours
ours.forward(pickle.loads(bytes.fromhex(sys.argv[1])), sys.argv[2])
"""


def kernel_summary(setting, dtype):
    """Rows {kind, implementation, data_types, calls, milliseconds, share} over our network's forward passes
    (`ours.forward` run with ONEDNN_VERBOSE=1 in a fresh process), the most time first; or {"error": ...} if
    nothing was logged (TensorFlow built without oneDNN, or TF_ENABLE_ONEDNN_OPTS=0)."""
    process = subprocess.run(
        [sys.executable, "-c", _FORWARD, pickle.dumps(setting).hex(), dtype],
        env={**os.environ, "ONEDNN_VERBOSE": "1"}, stdout=subprocess.PIPE, text=True,
    )
    totals = collections.defaultdict(lambda: [0, 0.0])
    for line in process.stdout.splitlines():
        # onednn_verbose,[timestamp,]primitive,exec,engine,kind,implementation,propagation,memory,...,milliseconds
        fields = line.split(",")
        if not fields[0].startswith("onednn_verbose") or "exec" not in fields:
            continue
        at = fields.index("exec")
        try:
            milliseconds = float(fields[-1])
        except ValueError:
            continue
        data_types = " ".join(sorted({part.split(":")[1] for part in fields[at + 5].split() if ":" in part}))
        entry = totals[(fields[at + 2], fields[at + 3], data_types)]
        entry[0] += 1
        entry[1] += milliseconds
    if not totals:
        return {"error": f"oneDNN logged nothing (exit status {process.returncode})"}
    everything = sum(milliseconds for _, milliseconds in totals.values()) or 1.0
    return [
        {"kind": kind, "implementation": implementation, "data_types": data_types, "calls": calls,
         "milliseconds": milliseconds, "share": milliseconds / everything}
        for (kind, implementation, data_types), (calls, milliseconds) in sorted(totals.items(),
                                                                               key=lambda item: -item[1][1])
    ]
