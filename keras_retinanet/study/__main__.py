"""`python -m keras_retinanet.study`: the same as `bin/study`."""

from keras_retinanet.cli.study import run

run()
