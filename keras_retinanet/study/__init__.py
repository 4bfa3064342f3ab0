"""The paper's ablations reproduced from our code. A study file (`configs/study/`, read by `spec.load_study`)
names an experiment, its variants and the tables they form; `runner.run_study` trains and measures every variant
(resumable); `report.write_report` writes the tables beside the paper's numbers, the verdict on each claim, and the
figures.

Command line: `bin/study` or `python -m keras_retinanet.cli.study` (`--help`).
"""

from keras_retinanet.study.spec import Study, load_study

__all__ = ["Study", "load_study"]
