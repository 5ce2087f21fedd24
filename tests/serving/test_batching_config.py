"""export/batching.config is a well-formed BatchingParameters text proto with consistent values.

(The BatchingParameters proto ships with the server, not with tensorflow-serving-api, so the fields
are checked against the proto's names by hand.)"""

import os
import re

CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "export", "batching.config")
WRAPPED = {"max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"}


def _parse(text):
    values, allowed, other = {}, [], []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if m := re.fullmatch(r"(\w+) \{ value: (\d+) \}", line):
            values[m[1]] = int(m[2])
        elif m := re.fullmatch(r"allowed_batch_sizes: (\d+)", line):
            allowed.append(int(m[1]))
        else:
            other.append(line)
    return values, allowed, other


def test_batching_config_is_consistent():
    """Every wrapped field once; allowed sizes strictly increasing and ending at max_batch_size (the
    server refuses the file otherwise)."""
    values, allowed, other = _parse(open(CONFIG).read())
    assert set(values) == WRAPPED and all(v > 0 for v in values.values())
    assert allowed == sorted(set(allowed)) and allowed[-1] == values["max_batch_size"]
    assert other == ["pad_variable_length_inputs: false"]
