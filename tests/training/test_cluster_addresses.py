"""TF_CONFIG with one address listed twice is refused before TensorFlow starts."""

import json

import pytest

from ctl_keras.training.cluster import read_tf_config


def _env(cluster, task=("worker", 0)):
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": task[0], "index": task[1]}})}


@pytest.mark.parametrize("cluster", [
    {"worker": ["localhost:2222", "localhost:2222"]},
    {"chief": ["host0:2222"], "worker": ["host1:2223", "HOST0:2222"]},  # across jobs; host names ignore case
])
def test_the_same_address_twice_is_one_line(cluster):
    with pytest.raises(ValueError) as err:
        read_tf_config(_env(cluster))
    message = str(err.value)
    assert "\n" not in message and "listed twice" in message
    assert "2222" in message


def test_distinct_addresses_on_one_host_are_fine():
    task = read_tf_config(_env({"worker": ["localhost:2222", "localhost:2223"]}, ("worker", 1)))
    assert task.num_workers == 2 and task.index == 1
