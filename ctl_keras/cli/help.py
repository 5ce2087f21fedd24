"""`ctl COMMAND --help` / `-h`: the flags this command defined, with their defaults: the shared ones by
their group in cli/options.py (data, model, output, ...), then the command's own; absl's own flags
(--pdb, --verbosity, ...) are left to --helpfull."""

from __future__ import annotations

import os
import sys
import textwrap

HELP_ARGS = ("-h", "--help", "-help", "--helpshort", "-?")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHARED = "ctl_keras.cli.options"


def _ours(module: str) -> bool:
    """absl keys a flag by its defining module's name, or by sys.argv[0] (a file path under runpy)."""
    return module in ("__main__", _SHARED) or module.startswith("ctl_keras.") or (
        os.path.isabs(module) and os.path.abspath(module).startswith(_PACKAGE + os.sep))


def wants_help(argv: list[str]) -> bool:
    return any(arg in HELP_ARGS for arg in argv[1:])


def _line(flag) -> str:
    value = flag.default
    if value is None:
        default = "(none)"
    elif isinstance(value, bool):
        default = str(value).lower()
    else:
        default = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    head = f"  --{flag.name}" + (f"={default}" if flag.flag_type() != "bool" else f" (default {default})")
    body = " ".join((flag.help or "").split())
    return head + "\n" + textwrap.fill(body, 100, initial_indent=" " * 8, subsequent_indent=" " * 8)


def command_help(name: str) -> str:
    """Every flag a ctl_keras module defined for this command, grouped; absl's and Beam's excluded."""
    from absl import flags

    from ctl_keras.cli.options import GROUP_OF, GROUPS  # noqa: PLC0415

    groups: dict[str, list] = {group: [] for group in GROUPS}
    own = []
    for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
        if module == _SHARED:
            for flag in module_flags:
                groups[GROUP_OF.get(flag.name, "other")].append(flag)
        elif _ours(module):
            own.extend(module_flags)
    titled = [(f"{group} options", found) for group, found in groups.items() if found]
    titled += [(f"{name} options", own)] if own else []
    sections = [f"{title}:\n" + "\n".join(_line(f) for f in sorted(found, key=lambda f: f.name))
                for title, found in titled]
    usage = f"usage: ctl {name} [flags]   (--helpfull adds absl's own flags)"
    return "\n\n".join([usage, *sections]) + "\n"


def print_help(name: str) -> None:
    sys.stdout.write(command_help(name))
