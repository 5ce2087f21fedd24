"""tf.distribute strategies for the custom loop: one device, MirroredStrategy, MultiWorkerMirroredStrategy.

Multi-worker start-up waits for every worker of TF_CONFIG with no time limit in TensorFlow (its first
all-reduce has timeout "inf"); a watchdog bounds that wait. Once the cluster is up, TensorFlow's
coordination service notices a worker that stops sending heartbeats and aborts the collectives of the
others with an UnavailableError, which train.py turns into one line.
"""

from __future__ import annotations

import faulthandler
import subprocess
import sys

import tensorflow as tf

from ctl_keras.config import STRATEGIES


def make_strategy(name: str, worker_timeout: float = 600.0, task_name: str = "this worker") -> tf.distribute.Strategy:
    """auto: MirroredStrategy over the GPUs when there are several, else one device.

    mirrored: MirroredStrategy over every visible GPU, or over the logical CPUs when there is no GPU
    (that is how the multi-replica path is tested on a CPU split into logical devices).
    multi_worker: MultiWorkerMirroredStrategy from TF_CONFIG (checked by cluster.read_tf_config first);
    must be created before any other TensorFlow op of the process.
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    if name == "multi_worker":
        return _multi_worker(worker_timeout, task_name)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if name == "mirrored" or (name == "auto" and len(gpus) > 1):
        devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.OneDeviceStrategy(gpus[0] if gpus else "/cpu:0")


# Prints the one-line error when faulthandler reports a timeout through the pipe (see _multi_worker).
_REPORTER = """import sys
if sys.stdin.buffer.read().startswith(b"Timeout"):
    sys.stderr.write(sys.argv[1] + "\\n")
"""


def _multi_worker(timeout: float, task_name: str) -> tf.distribute.Strategy:
    """The strategy, or exit 1 with one line when the cluster does not come up within `timeout`.

    TensorFlow blocks in C++ without releasing the GIL while it waits for the cluster, so no Python
    thread or signal handler can run. faulthandler's watchdog is a C thread: on timeout it writes its
    report into a pipe and exits the process with status 1; a tiny reporter process reading the pipe
    turns that into our line (and stays silent when the pipe closes without a report).
    """
    message = (f"train: error: {task_name}: the other workers of TF_CONFIG did not all connect within "
               f"{timeout:g} s (--worker_timeout); start every worker and check their addresses and ports")
    reporter = subprocess.Popen([sys.executable, "-c", _REPORTER, message], stdin=subprocess.PIPE)
    faulthandler.dump_traceback_later(timeout, exit=True, file=reporter.stdin)
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    finally:
        faulthandler.cancel_dump_traceback_later()
        reporter.stdin.close()
        reporter.wait()


def workers(strategy: tf.distribute.Strategy) -> int:
    """Number of worker processes taking part (1 unless multi-worker)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return 1
    spec = resolver.cluster_spec().as_dict()
    return sum(len(spec.get(job, [])) for job in ("chief", "worker")) or 1
