"""`ctl COMMAND --help` / `-h`: the command's own flags, grouped by the module that defines them, with
their defaults; absl's own flags (--pdb, --verbosity, ...) are left to --helpfull."""

from __future__ import annotations

import sys
import textwrap

HELP_ARGS = ("-h", "--help", "-help", "--helpshort", "-?")
_TITLES = {"__main__": "{name} options", "ctl_keras.cli.options": "dataset, model and training options"}


def wants_help(argv: list[str]) -> bool:
    return any(arg in HELP_ARGS for arg in argv[1:])


def _line(flag) -> str:
    default = flag.default_as_str if flag.default is not None else "(none)"
    head = f"  --{flag.name}" + (f"={default}" if flag.flag_type() != "bool" else f" (default {default})")
    body = " ".join((flag.help or "").split())
    return head + "\n" + textwrap.fill(body, 100, initial_indent=" " * 8, subsequent_indent=" " * 8)


def command_help(name: str) -> str:
    """Every flag a ctl_keras module defined for this command, grouped; absl's and Beam's excluded."""
    from absl import flags

    sections = []
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
        if not (module == "__main__" or module.startswith("ctl_keras")):
            continue
        title = _TITLES.get(module, module.rsplit(".", 1)[-1].replace("_", " ") + " options").format(name=name)
        lines = [_line(f) for f in sorted(module_flags, key=lambda f: f.name)]
        sections.append(f"{title}:\n" + "\n".join(lines))
    usage = f"usage: ctl {name} [flags]   (--helpfull adds absl's own flags)"
    return "\n\n".join([usage, *sections]) + "\n"


def print_help(name: str) -> None:
    sys.stdout.write(command_help(name))
