"""Every command reports a bad flag value the same short way: absl's two lines, exit 1, no traceback
(build_dataset and recommend parse with pass-through for Beam options)."""

import os
import subprocess
import sys

import pytest

ABSL_HINT = "Pass --helpshort or --helpfull to see help on flags."
CASES = [
    ("ctl_keras.train", ["--variant=nope"]),
    ("ctl_keras.evaluate", ["--split=nope"]),
    ("ctl_keras.export", ["--top_k=abc"]),
    ("ctl_keras.experiments", ["--epochs=abc"]),
    ("ctl_keras.analysis", ["report", "--num_scenes=abc"]),
    ("ctl_keras.build_dataset", ["--workers=abc"]),
    ("ctl_keras.download", ["--retries=abc"]),
    ("ctl_keras.recommend", ["index", "--batch_size=abc"]),
    ("ctl_keras.recommend", ["query", "--batch_size=0"]),  # below lower_bound
    ("ctl_keras.export", ["--min_backbone_agreement=1.5"]),  # above upper_bound
]


@pytest.mark.slow
@pytest.mark.parametrize("module,args", CASES, ids=[f"{m.split('.')[-1]}-{a[-1]}" for m, a in CASES])
def test_a_bad_flag_value_is_two_lines(module, args):
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert lines[-2:] == [lines[-2], ABSL_HINT], proc.stderr[-2000:]
    assert lines[-2].startswith("FATAL Flags parsing error: flag --") and args[-1].split("=")[0] in lines[-2]
