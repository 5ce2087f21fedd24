"""The one opening and error handling of every command-line tool.

Adopting it (a CLI keeps its `main(argv)`; absl's `app.run(main)` becomes `cli.run`):

    from ctl_keras import cli
    from ctl_keras.cli import options

    def define_flags():                       # the flag convention: defined on demand, never at import,
        options.define("model_dir", "export_dir")  # so any module can be imported without flag clashes;
        flags.DEFINE_integer(...)                  # shared names once in cli/options.py, the rest here

    def main(argv):
        cli.require("model_dir")                                 # ValueError "--model_dir is required"
        cli.check_output_dir(FLAGS.export_dir, "export_dir")     # before any work
        ...                                                      # raise ValueError etc. on bad input

    if __name__ == "__main__":
        cli.run(main, "export", define_flags=define_flags)  # + commands=COMMANDS for `tool COMMAND`

`run` gives every tool the same behaviour:
  - TensorFlow's C++ start-up noise is filtered (logs.quiet_tensorflow_startup) and TF/Keras INFO
    records are dropped from absl's handler (logs.quiet_library_info);
  - positional arguments: none allowed, or exactly one of `commands` (argv[1]);
  - ValueError, OSError (FileNotFoundError, NotADirectoryError, ...), RuntimeError and TensorFlow's
    runtime errors (tf.errors.OpError, e.g. DataLossError from a truncated TFRecord) end the process
    with ONE line on stderr, `<name>: error: <message>` (`<name> <command>: error:` with commands),
    and exit code 1; the traceback goes to absl's DEBUG log (--verbosity=1 shows it);
  - Ctrl-C / SIGTERM print `<name>: interrupted` and exit 130 / 143 instead of a traceback;
  - `ExitNow` (a RuntimeError) prints its line the same way and then ends the process with os._exit,
    skipping interpreter shutdown: after a multi-worker peer dies, TensorFlow's collective and
    coordination-service teardown can block exit for minutes waiting for that peer.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sys
from typing import Callable, Sequence

from ctl_keras.utils import logs

USER_ERRORS = (ValueError, OSError, RuntimeError)
_REBUILD_HINT = "a damaged data file? rebuild the dataset with `ctl build`"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt (same clean-up paths)."""


class ExitNow(RuntimeError):
    """A user error after which the runtime cannot be shut down cleanly (see the module docstring).
    Raise it only once every file is written and every lock released (no atexit handler runs)."""


def _raise_terminated(signum, frame):
    raise Terminated()


def require(*names: str, flag_values=None) -> None:
    """ValueError naming the first of the flags `names` that is unset."""
    from absl import flags

    values = flag_values or flags.FLAGS
    for name in names:
        if getattr(values, name) in (None, "", []):
            raise ValueError(f"--{name} is required")


def _check_creatable(path: str, flag_name: str) -> None:
    """`path` does not exist: its nearest existing ancestor must be a directory we may write in."""
    existing = os.path.dirname(path)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"--{flag_name}={path} cannot be created: {existing} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--{flag_name}={path}: no permission to write in {existing}")


def check_output_dir(path: str | os.PathLike | None, flag_name: str) -> None:
    """Fail now, before any work, when `path` can never become a writable directory: it is a file,
    a parent is a file, or the nearest existing parent is not writable. Creates nothing."""
    if path is None or os.fspath(path) == "":
        return
    path = os.path.abspath(os.fspath(path))
    if not os.path.exists(path):
        _check_creatable(path, flag_name)
    elif not os.path.isdir(path):
        raise ValueError(f"--{flag_name}={path} is a file, not a directory")
    elif not os.access(path, os.W_OK | os.X_OK):
        raise ValueError(f"--{flag_name}={path}: no permission to write in {path}")


def check_output_file(path: str | os.PathLike | None, flag_name: str) -> None:
    """As check_output_dir, for a file to be (re)written: not a directory, its directory writable."""
    if path is None or os.fspath(path) == "":
        return
    path = os.path.abspath(os.fspath(path))
    if os.path.isdir(path):
        raise ValueError(f"--{flag_name}={path} is a directory; expected a file name")
    if not os.path.exists(path):
        _check_creatable(path, flag_name)
    elif not os.access(os.path.dirname(path), os.W_OK | os.X_OK):
        raise ValueError(f"--{flag_name}={path}: no permission to write in {os.path.dirname(path)}")


class _BeamWorkerErrors(logging.Filter):
    """Drops Beam's ERROR record (with its traceback) for a user error a bundle raised: the same error
    reaches cli.run, which prints it as one line (and its traceback at --verbosity=1)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("apache_beam") or not record.exc_info:
            return True
        return not isinstance(record.exc_info[1], USER_ERRORS)


def quiet_beam_worker_errors() -> None:
    for name in ("apache_beam.runners.worker.bundle_processor", "apache_beam.runners.worker.sdk_worker",
                 "apache_beam.runners.common"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _BeamWorkerErrors) for f in logger.filters):
            logger.addFilter(_BeamWorkerErrors())


def error_line(err: BaseException) -> str:
    """One line for a user error. TensorFlow runtime errors lose their graph-function prefix and
    get a hint; other messages have their whitespace collapsed."""
    tf = sys.modules.get("tensorflow")  # never import TF here: a flag error must stay fast
    if tf is not None and isinstance(err, tf.errors.OpError):
        text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", getattr(err, "message", "") or str(err)).strip()
        first = re.sub(r"\s*name:\s*$", "", text.splitlines()[0]) if text else ""  # eager ops end "name: "
        hint = f" ({_REBUILD_HINT})" if isinstance(err, tf.errors.DataLossError) else ""
        return f"{type(err).__name__}: {first}{hint}"
    return " ".join(str(err).split()) or type(err).__name__


def _is_user_error(err: BaseException) -> bool:
    tf = sys.modules.get("tensorflow")
    return isinstance(err, USER_ERRORS) or (tf is not None and isinstance(err, tf.errors.OpError))


def _fail(prefix: str, message: str, code: int = 1, *, now: bool = False):
    print(f"{prefix}: {message}", file=sys.stderr, flush=True)
    if now:
        sys.stdout.flush()
        os._exit(code)
    sys.exit(code)


def run(main: Callable[[list[str]], None], name: str, *, define_flags: Callable[[], None] | None = None,
        commands: Sequence[str] | None = None, pass_through: bool = False) -> None:
    """absl's app.run(main) with the shared opening and error handling above (never returns).
    `define_flags` is called first (flags exist only when the module runs as a command).
    `pass_through`: arguments that are not our flags reach main's argv (Beam pipeline options)."""
    from absl import app
    from absl import logging as absl_logging

    logs.quiet_tensorflow_startup()
    if define_flags is not None:
        define_flags()
    from ctl_keras.cli import help as command_help  # noqa: PLC0415

    if command_help.wants_help(sys.argv):  # our flags, grouped; absl's own stay behind --helpfull
        command_help.print_help(name.split()[0] if name else "ctl")
        sys.exit(0)

    def wrapped(argv):
        logs.quiet_library_info()
        quiet_beam_worker_errors()
        prefix = name
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            if commands is None:
                if len(argv) > 1 and not pass_through:
                    raise ValueError(f"unexpected arguments: {' '.join(argv[1:])}")
            else:
                if len(argv) < 2 or argv[1] not in commands or (len(argv) > 2 and not pass_through):
                    raise ValueError(f"expected one command out of {', '.join(commands)}; got {argv[1:]}")
                prefix = f"{name} {argv[1]}"
            main(argv)
        except Terminated:
            _fail(prefix, "terminated", 143)
        except KeyboardInterrupt:
            _fail(prefix, "interrupted", 130)
        except Exception as err:
            if not _is_user_error(err):
                raise
            absl_logging.debug("%s failed", prefix, exc_info=True)
            _fail(prefix, f"error: {error_line(err)}", now=isinstance(err, ExitNow))

    parser = _pass_through_parser if pass_through else None
    app.run(wrapped, **({"flags_parser": parser} if parser else {}))


def _pass_through_parser(argv: list[str]) -> list[str]:
    """Our flags parsed, the rest (Beam's options) left in argv. A bad value of one of ours ends the
    process as absl's own parser does for every other tool (two lines, exit 1), not with a traceback."""
    from absl import flags

    try:
        return flags.FLAGS(argv, known_only=True)
    except flags.Error as err:
        print(f"FATAL Flags parsing error: {err}", file=sys.stderr)
        print("Pass --helpshort or --helpfull to see help on flags.", file=sys.stderr)
        sys.exit(1)
