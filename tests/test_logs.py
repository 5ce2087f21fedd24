import logging
import os

from absl import logging as absl_logging

from ctl_keras.utils import logs


def _record(path, level):
    return logging.LogRecord("absl", level, path, 1, "msg", None, None)


def test_library_info_is_dropped_but_warnings_and_our_info_pass():
    """A TF INFO record is filtered; a TF WARNING and a ctl_keras INFO record are kept; idempotent."""
    logs.quiet_library_info()
    logs.quiet_library_info()
    handler = absl_logging.get_absl_handler()
    ours = [f for f in handler.filters if isinstance(f, logs._DropLibraryInfo)]
    assert len(ours) == 1
    tf_file = os.path.join(os.sep, "venv", "site-packages", "tensorflow", "python", "saver.py")
    assert not handler.filter(_record(tf_file, logging.INFO))
    assert handler.filter(_record(tf_file, logging.WARNING))
    assert handler.filter(_record(os.path.join(os.sep, "repo", "ctl_keras", "train.py"), logging.INFO))
