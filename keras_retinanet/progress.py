"""Progress of long work over images (detection, evaluation, conversion, statistics, calibration; anchor fitting
counts generations): Keras' `Progbar`, as training shows it, with images/s.

On a terminal the bar redraws in place; anywhere else (a pipe, a log file) only its final line is printed, e.g.
`8/8 - 3s - 375ms/image - images/s: 2.6667`, so logs stay short. Library functions take `progress=False` and show
the bar only when a caller (the command lines) turns it on.
"""

import sys
import time

RATE = "images/s"


def image_progress(total, show=True, unit="image"):
    """A function `update(done)` to call with the number of images (or other `unit`s) done so far: it draws a
    `keras.utils.Progbar` over `total` of them with their rate when `show`, and does nothing otherwise."""
    if not show:
        return lambda done: None
    import keras

    interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
    rate_name = RATE if unit == "image" else f"{unit}s/s"
    bar = keras.utils.Progbar(total, verbose=1 if interactive else 2, stateful_metrics=[rate_name], unit_name=unit)
    start = time.time()
    first_done_at = None

    def update(done):
        # Timed as Progbar times an image, so that the two figures agree: from the start or, when image 1 was
        # reported on its own, from then on (the first image, which pays for the warm-up, left out).
        nonlocal first_done_at
        now = time.time()
        if done == 1:
            first_done_at = now
        if first_done_at is not None and done > 1:
            rate = (done - 1) / max(now - first_done_at, 1e-9)
        else:
            rate = done / max(now - start, 1e-9)
        bar.update(done, [(rate_name, rate)])

    return update
