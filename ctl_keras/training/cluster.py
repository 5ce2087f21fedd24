"""This process's place in a multi-worker cluster, read from TF_CONFIG without importing TensorFlow.

TF_CONFIG is the variable Kubernetes operators and Vertex AI set on every pod:
    {"cluster": {"worker": ["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}
An optional "chief" job (one address) is the writer; without one, worker 0 is. Checking it here, before
TensorFlow starts, turns a typo into one line instead of a hang or a C++ abort.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import tempfile

from ctl_keras.utils.process import pid_alive

ROLES = ("chief", "worker")


@dataclasses.dataclass(frozen=True)
class ClusterTask:
    task_type: str
    index: int
    num_workers: int  # every training process: chief + workers
    has_chief: bool = False

    @property
    def is_writer(self) -> bool:
        """The one process that writes into model_dir (checkpoints, weights, TensorBoard, results)."""
        return self.task_type == "chief" or (self.task_type == "worker" and self.index == 0
                                             and not self.has_chief)

    @property
    def name(self) -> str:
        return f"{self.task_type} {self.index}"


def _address_ok(address) -> bool:
    if not isinstance(address, str) or ":" not in address:
        return False
    host, port = address.rsplit(":", 1)
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def read_tf_config(environ=os.environ) -> ClusterTask:
    """Parse and check TF_CONFIG; raise ValueError with one line naming the problem."""
    raw = environ.get("TF_CONFIG")
    if not raw:
        raise ValueError('--strategy=multi_worker needs TF_CONFIG, e.g. {"cluster": {"worker": '
                         '["host0:port", "host1:port"]}, "task": {"type": "worker", "index": 0}}')
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict):
        raise ValueError('TF_CONFIG has no "cluster" object')
    cluster, task = spec["cluster"], spec.get("task")
    extra = sorted(set(cluster) - set(ROLES))
    if extra:
        raise ValueError(f"TF_CONFIG cluster has job(s) {', '.join(extra)}; multi-worker training uses only "
                         "chief and worker (parameter servers and evaluators are not supported)")
    for job in ROLES:
        if job in cluster:
            addresses = cluster[job]
            if not isinstance(addresses, list) or not addresses:
                raise ValueError(f'TF_CONFIG cluster "{job}" must be a non-empty list of "host:port" addresses')
            bad = [a for a in addresses if not _address_ok(a)]
            if bad:
                raise ValueError(f'TF_CONFIG cluster "{job}" has an address that is not "host:port": {bad[0]!r}')
    seen: dict[str, str] = {}
    for job in ROLES:
        for i, address in enumerate(cluster.get(job, [])):
            key = address.lower()  # host names ignore case
            if key in seen:
                raise ValueError(f"TF_CONFIG address {address!r} is listed twice ({seen[key]} and {job} {i}); every "
                                 "chief and worker needs its own host:port")
            seen[key] = f"{job} {i}"
    if len(cluster.get("chief", [])) > 1:
        raise ValueError(f'TF_CONFIG cluster "chief" has {len(cluster["chief"])} addresses; at most one')
    if "worker" not in cluster and "chief" not in cluster:
        raise ValueError('TF_CONFIG cluster has no "worker" list')
    if not isinstance(task, dict) or "type" not in task:
        raise ValueError('TF_CONFIG has no "task": {"type": ..., "index": ...}')
    task_type, index = task["type"], task.get("index", 0)
    if task_type not in cluster:
        raise ValueError(f"TF_CONFIG task type {task_type!r} is not a job of the cluster "
                         f"({', '.join(sorted(cluster))})")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task_type]):
        raise ValueError(f"TF_CONFIG task index {index!r} is not in the cluster: {task_type!r} has "
                         f"{len(cluster[task_type])} address(es), indices 0..{len(cluster[task_type]) - 1}")
    workers = len(cluster.get("chief", [])) + len(cluster.get("worker", []))
    return ClusterTask(task_type, index, workers, has_chief="chief" in cluster)


def worker_temp_dir(task: ClusterTask) -> str:
    """A fresh temporary out_dir for a non-writing worker; those of its dead predecessors (SIGKILL leaves
    them behind) are removed first."""
    prefix = f"ctl_keras-{task.task_type}{task.index}-"
    for path in glob.glob(os.path.join(tempfile.gettempdir(), prefix + "*")):
        owner = os.path.basename(path)[len(prefix):].split("-")[0]
        if not owner.isdigit() or not pid_alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")
