"""TF_CONFIG that TensorFlow would misread or fail on deep inside is refused before training, naming TF_CONFIG and
the value (the multi-worker runs themselves: test_multi_worker.py)."""

import json

import pytest

from keras_retinanet.training.strategies import StrategyError, _cluster_resolver

WORKERS = {"worker": ["localhost:1", "localhost:2"]}


@pytest.mark.parametrize("tf_config, message", [
    ("{cluster: [node0]}", r"TF_CONFIG is not JSON \(Expecting property name .*\): '\{cluster: \[node0\]\}'$"),
    ("[" * 100_000, r"TF_CONFIG is not JSON \(.*\): '\[\[\[\[.*\.\.\.'$"),
    ("[1, 2]", r"TF_CONFIG is not a JSON object: '\[1, 2\]'"),
    ({"task": {"type": "worker", "index": 0}}, r"TF_CONFIG 'cluster' is None, not a mapping of jobs"),
    ({"cluster": {"worker": "localhost:1"}, "task": {"type": "worker", "index": 0}},
     r"TF_CONFIG 'cluster.worker' is 'localhost:1', not a list of host:port addresses"),
    ({"cluster": {**WORKERS, "ps": ["localhost:3"]}, "task": {"type": "worker", "index": 0}},
     r"TF_CONFIG 'cluster' has job 'ps': multi_worker trains with chief and worker tasks only"),
    ({"cluster": {**WORKERS, "chief": ["localhost:3", "localhost:4"]}, "task": {"type": "chief", "index": 0}},
     r"TF_CONFIG 'cluster.chief' has 2 addresses: there is one chief at most"),
    ({"cluster": WORKERS}, r"TF_CONFIG 'task' is None, not a mapping with type and index"),
    ({"cluster": WORKERS, "task": {"type": "wrker", "index": 0}},
     r"TF_CONFIG 'task.type' is 'wrker', not a job of the cluster \('worker'\)"),
    ({"cluster": WORKERS, "task": {"type": "worker", "index": "one"}},
     r"TF_CONFIG 'task.index' is 'one', not an integer"),
    ({"cluster": WORKERS, "task": {"type": "worker", "index": 1.5}}, r"TF_CONFIG 'task.index' is 1.5, not an integer"),
    ({"cluster": WORKERS, "task": {"type": "worker", "index": True}},
     r"TF_CONFIG 'task.index' is True, not an integer"),
    ({"cluster": WORKERS, "task": {"type": "worker", "index": 2}},
     r"TF_CONFIG 'task.index' is 2, out of range: the cluster has 2 'worker' tasks \(0 to 1\)"),
    ({"cluster": WORKERS, "task": {"type": "worker", "index": -1}}, r"TF_CONFIG 'task.index' is -1, out of range"),
])
def test_bad_tf_config_is_named_with_its_value(monkeypatch, tf_config, message):
    monkeypatch.setenv("TF_CONFIG", tf_config if isinstance(tf_config, str) else json.dumps(tf_config))
    with pytest.raises(StrategyError, match=message) as error:
        _cluster_resolver()
    assert "\n" not in str(error.value) and len(str(error.value)) < 300


def test_a_good_tf_config_gives_its_cluster_and_task(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {**WORKERS, "chief": ["localhost:3"]},
                                                "task": {"type": "worker", "index": 1}}))
    resolver = _cluster_resolver()
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    assert resolver.cluster_spec().as_dict() == {**WORKERS, "chief": ["localhost:3"]}
