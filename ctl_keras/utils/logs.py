"""CLI logging: keep our progress lines readable.

1. TensorFlow logs through absl too, and under `app.run` its INFO lines (one "Sharding callback
duration" per checkpoint save, SavedModel signature renames, ...) bury ours. Drop TensorFlow's and
Keras's INFO records from absl's handler; their warnings and errors still pass.
2. TensorFlow's C++ start-up lines on a machine without a GPU (a "failed call to cuInit" ERROR
among them, which users read as a failure): see quiet_tensorflow_startup().
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import logging
import os
import sys
import tempfile

from absl import logging as absl_logging

_LIBRARY_DIRS = tuple(f"{os.sep}{name}{os.sep}" for name in ("tensorflow", "keras", "tf_keras_vis"))


class _DropLibraryInfo(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not any(d in record.pathname for d in _LIBRARY_DIRS)


def quiet_library_info() -> None:
    """Install the filter once on absl's handler (idempotent)."""
    handler = absl_logging.get_absl_handler()
    if not any(isinstance(f, _DropLibraryInfo) for f in handler.filters):
        handler.addFilter(_DropLibraryInfo())


# ---------------------------------------------------------------- TensorFlow's C++ start-up lines
# Printed by every `import tensorflow` on a machine without a GPU, before absl logging is set up, so
# neither TF_CPP_MIN_LOG_LEVEL (cudart_stub ignores it) nor absl's Python logging reaches them; the
# cuInit line is an ERROR, and TF_CPP_MIN_LOG_LEVEL=3 would hide every real C++ error with it.
# They are dropped by content, only while TensorFlow is imported and finds its devices.
_STARTUP_NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "cudart_stub.cc",                      # "Could not find cuda drivers on your machine"
    "cpu_feature_guard.cc",                # "This TensorFlow binary is optimized to use ..."
    "To enable the following instructions:",  # its second line
    "rebuild TensorFlow with the appropriate compiler flags",
    "Unable to register cuDNN factory", "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    # INFO, printed twice per import: port.cc (and its log-once flag) is linked into both
    # libtensorflow_framework.so.2 and python/profiler/internal/_pywrap_profiler_plugin.so, which
    # `import tensorflow` loads; the same process, not a subprocess or a Beam worker.
    "oneDNN custom operations are on",
)
_CUINIT = "failed call to cuInit"
_NVIDIA_DRIVER = "/proc/driver/nvidia/version"


def is_startup_noise(line: str, has_nvidia_driver: bool = False) -> bool:
    """True for TensorFlow's known GPU-less start-up lines. A failed cuInit is noise only when no
    NVIDIA driver is loaded: with one, it is a real error (wrong driver, no permission) and is kept."""
    if _CUINIT in line:
        return not has_nvidia_driver
    return any(marker in line for marker in _STARTUP_NOISE)


@contextlib.contextmanager
def _filtered_stderr():
    """Send file descriptor 2 (C++ writes there directly) to a temp file, then replay every line
    that is not start-up noise. A temp file, not a pipe: a full pipe would block TensorFlow."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            driver = os.path.exists(_NVIDIA_DRIVER)
            kept = [line for line in captured.read().decode("utf-8", "replace").splitlines(keepends=True)
                    if not is_startup_noise(line, driver)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs TensorFlow's own loader, then lists the GPUs (the call that runs cuInit), under the filter."""

    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        with _filtered_stderr():
            self._inner.exec_module(module)
            module.config.list_physical_devices("GPU")

    def __getattr__(self, name):  # resource readers etc. come from the real loader
        return getattr(self._inner, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Wraps the loader of the top-level `tensorflow` package; stays installed, so a bare
    importlib.util.find_spec("tensorflow") (availability checks) does not use it up."""

    _busy = False

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow" or self._busy:
            return None
        self._busy = True  # the search below must find the real spec, not recurse into us
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._busy = False
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _DropKnownImportWarnings(logging.Filter):
    """Apache Beam warns at import that its optional BigQuery clients are missing (we never use them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("apitools not found, and bigquery client libraries")


def quiet_tensorflow_startup() -> None:
    """Call before TensorFlow is imported (CLIs: ctl_keras.cli.run does). TF_CPP_MIN_LOG_LEVEL
    defaults to 1 (C++ INFO lines off; warnings and errors stay) unless the user set it, and the
    first `import tensorflow` drops the start-up noise above, wherever it happens (TF is imported
    lazily, after the flags are checked, so a flag error stays fast). TF_CPP_MIN_LOG_LEVEL=0 keeps
    everything. CUDA_VISIBLE_DEVICES is never touched."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    root = logging.getLogger()
    if not any(isinstance(f, _DropKnownImportWarnings) for f in root.filters):
        root.addFilter(_DropKnownImportWarnings())
    if os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" or "tensorflow" in sys.modules:
        return
    if not any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
