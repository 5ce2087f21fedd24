"""CLI logging: keep our progress lines readable.

TensorFlow logs through absl too, and under `app.run` its INFO lines (one "Sharding callback
duration" per checkpoint save, SavedModel signature renames, ...) bury ours. Drop TensorFlow's and
Keras's INFO records from absl's handler; their warnings and errors still pass.
"""

from __future__ import annotations

import logging
import os

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
