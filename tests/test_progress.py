"""Progress bars of long work over images (`keras_retinanet.progress`): Keras' Progbar with images/s, one final line
off a terminal, and nothing from a library call that does not ask for it."""

import os
import re
import time

import numpy as np
import pytest

from keras_retinanet.config import DataConfig, load_config
from keras_retinanet.data import DataPolicy, read_dataset
from keras_retinanet.data.statistics import InputGeometry, dataset_statistics
from keras_retinanet.export.litert import calibration_images
from keras_retinanet.inference import detect
from keras_retinanet.models.factory import build_anchor_generator, build_matcher
from keras_retinanet.progress import image_progress
from tiny import tiny_retinanet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RACCOON = os.path.join(ROOT, "tests", "data", "raccoon")

# The bar's final line off a terminal (Progbar's verbose=2): images done / all, seconds, time per image, rate.
FINAL_LINE = re.compile(r"(\d+)/(\d+) - \d+s - (\d+)(us|ms|s)/image - images/s: (\d+\.\d+)")


def final_lines(output):
    """(done, total, seconds per image, images/s) of each final bar line in `output`."""
    seconds = {"us": 1e-6, "ms": 1e-3, "s": 1.0}
    return [(int(done), int(total), int(time_per_image) * seconds[unit], float(rate))
            for done, total, time_per_image, unit, rate in FINAL_LINE.findall(output)]


@pytest.fixture(scope="module")
def raccoon():
    return read_dataset("voc", os.path.join(RACCOON, "annotations"), os.path.join(RACCOON, "images"), "",
                        DataPolicy())


def test_off_a_terminal_only_the_final_line_with_the_rate_is_printed(capsys):
    update = image_progress(4)
    for done in range(1, 4):
        time.sleep(0.05)
        update(done)
    assert capsys.readouterr().out == ""  # not a terminal: nothing before the end
    time.sleep(0.05)
    update(4)
    output = capsys.readouterr().out
    assert output.count("\n") == 1 and FINAL_LINE.fullmatch(output.strip()), output
    [(done, total, time_per_image, rate)] = final_lines(output)
    assert (done, total) == (4, 4)
    # The rate and Progbar's time per image (whole milliseconds) are the same measurement: ~50 ms, ~20 images/s.
    assert rate * time_per_image == pytest.approx(1.0, abs=0.05) and 10 < rate < 21

    hidden = image_progress(4, show=False)
    for done in range(1, 5):
        hidden(done)
    assert capsys.readouterr().out == ""


def test_other_units_name_the_bar_and_its_rate(capsys):
    update = image_progress(2, unit="generation")
    update(1)
    update(2)
    output = capsys.readouterr().out
    assert "/generation" in output and "generations/s: " in output and "images/s" not in output


def test_library_calls_show_the_bar_only_when_asked(raccoon, capsys):
    model = tiny_retinanet(num_classes=1)
    data_config = DataConfig(min_size=64, max_size=128)
    quiet = detect(model, raccoon, data_config, batch_size=2)
    assert capsys.readouterr().out == ""
    shown = detect(model, raccoon, data_config, batch_size=2, progress=True)
    assert [line[:2] for line in final_lines(capsys.readouterr().out)] == [(5, 5)]
    for key in quiet:
        np.testing.assert_array_equal(quiet[key], shown[key])

    geometry = InputGeometry(data_config, build_anchor_generator(load_config(None).model.anchors),
                             build_matcher(load_config(None).model.matcher))
    quiet = dataset_statistics(raccoon, geometry)
    assert capsys.readouterr().out == ""
    shown = dataset_statistics(raccoon, geometry, progress=True)
    assert [line[:2] for line in final_lines(capsys.readouterr().out)] == [(5, 5)]
    np.testing.assert_array_equal(quiet.best_iou, shown.best_iou)

    quiet = list(calibration_images(raccoon, (64, 64), "detectron", 3)())
    assert capsys.readouterr().out == ""
    shown = list(calibration_images(raccoon, (64, 64), "detectron", 3, progress=True)())
    assert [line[:2] for line in final_lines(capsys.readouterr().out)] == [(3, 3)]
    assert len(quiet) == len(shown) == 3
    for a, b in zip(quiet, shown):
        np.testing.assert_array_equal(a["images"], b["images"])
