"""The benchmark's table: rows of seconds (or other units) for us, the peers and the floor, as Markdown."""

from keras_retinanet.benchmark.hardware import machine_text

PEER_NAMES = {"torchvision": "torchvision", "keras_hub": "KerasHub"}


# Units of figures where more is better (as for rates, "/s"): COCO AP, training iterations done.
HIGHER_IS_BETTER = ("AP", "iterations")


def row(path, ours, unit="s", floor=None, peers=None, note=""):
    """One line of the table. `ours` and each of `peers` ({name: result}) is a number, None (not measured) or a
    case result holding "error"; lower is better unless `unit` is a rate ("/s") or one of `HIGHER_IS_BETTER`."""
    return {"path": path, "unit": unit, "ours": ours, "floor": floor, "peers": peers or {}, "note": note}


def _value(result):
    return result if isinstance(result, (int, float)) else None


def _cell(result, unit):
    if result is None:
        return "-"
    if isinstance(result, dict):
        return f"fails ({result['error']})" if "error" in result else "-"
    if unit == "GiB":
        return f"{result:.2f} GiB"
    if unit in HIGHER_IS_BETTER:
        return f"{result:.3f}" if unit == "AP" else f"{result:.0f}"
    if unit.endswith("/s"):
        return f"{result:.1f} {unit}"
    return f"{1000 * result:.1f} ms" if result < 0.1 else f"{result:.3f} s"


def _ratio(numerator, denominator):
    if numerator is None or denominator is None or denominator == 0:
        return "-"
    return f"{numerator / denominator:.2f}"


def markdown(report):
    """The table of a `bin/benchmark` report (its JSON), with the machine and the command above it."""
    machine = report["machine"]
    lines = [
        f"Measured {report['date']} on {machine_text(machine)}, TensorFlow {machine['tensorflow']}, with "
        f"`{report['command']}`. Floor: {report['gflop_per_image']:.1f} "
        "GFLOP a forward per image (a training step: 3 times that) over the matmul peak measured in the same run ("
        + ", ".join(f"{dtype} {gflops:.0f} GFLOP/s" for dtype, gflops in report["peak_gflops"].items())
        + f"). Medians of {report['setting']['repeats']} runs.",
        "",
    ]
    header = ["path", "ours", *(PEER_NAMES[peer] for peer in report["peers"]), "floor", "ours / floor",
              "ours / best peer", "note"]
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    for line in report["rows"]:
        unit = line["unit"]
        peer_values = [_value(line["peers"].get(peer)) for peer in report["peers"]]
        measured = [value for value in peer_values if value is not None]
        best_peer = (max if unit.endswith("/s") or unit in HIGHER_IS_BETTER else min)(measured) if measured else None
        ours = _value(line["ours"])
        cells = [
            line["path"],
            _cell(line["ours"], unit),
            *(_cell(line["peers"].get(peer), unit) for peer in report["peers"]),
            _cell(line["floor"], unit),
            _ratio(ours, line["floor"]),
            _ratio(ours, best_peer),
            line["note"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for dtype, kernels in report.get("onednn", {}).items():
        lines += ["", f"oneDNN kernels of our network forward, {dtype} (ONEDNN_VERBOSE):", ""]
        if "error" in kernels:
            lines.append(kernels["error"])
            continue
        lines += ["| share | calls | kind | implementation | data types |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {k['share']:.1%} | {k['calls']} | {k['kind']} | {k['implementation']} | {k['data_types']} |"
                  for k in kernels]
    return "\n".join(lines)
