"""`ctl COMMAND [flags]` (the console script setup.py installs) = `python -m ctl_keras COMMAND [flags]`
= `python -m ctl_keras.<command> [flags]`: each command runs its module of ctl_keras/cli as `python -m`
would (same flags, `--help`/`-h`, one-line errors, exit codes; cli.run does all of it).

    ctl train --dataset=synthetic --smoke
    ctl recommend look --index=export/demo/catalog --scene=photo.jpg --k=5
"""

from __future__ import annotations

import runpy
import sys

# command -> (module run as __main__, one line of help)
COMMANDS = {
    "download": ("ctl_keras.cli.download", "download the images of an STL dataset (resumable, verified)"),
    "build": ("ctl_keras.cli.build", "crop, split by scene, write TFRecords + manifest.json (Beam)"),
    "train": ("ctl_keras.cli.train", "train a model (resumes after a crash)"),
    "evaluate": ("ctl_keras.cli.evaluate", "AUC, Top-K and per-category scores: eval.json"),
    "experiments": ("ctl_keras.cli.experiments", "every method and baseline: Table 2, Figure 5"),
    "analysis": ("ctl_keras.cli.analysis", "attention, figures, human-evaluation kit, HTML report"),
    "export": ("ctl_keras.cli.export", "TF Serving SavedModels of the towers (+ recommender)"),
    "recommend": ("ctl_keras.cli.recommend", "index a catalog; query or look for a scene photo"),
    "serve": ("ctl_keras.cli.serve", "the look service: HTTP API, page, metrics, hot catalog swaps"),
    "demo": ("ctl_keras.cli.demo", "the whole pipeline on the synthetic dataset (`make demo`)"),
}
ALIASES = {"build_dataset": "build"}  # the module's own name works too


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_line}" for name, (_, help_line) in COMMANDS.items()]
    return ("usage: ctl COMMAND [flags]   (ctl COMMAND --help lists a command's flags)\n\ncommands:\n"
            + "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    name = ALIASES.get(argv[0], argv[0])
    if name not in COMMANDS:
        print(f"ctl: error: unknown command {argv[0]!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = COMMANDS[name][0]
    # As `python -m module args`: the module becomes __main__ (Beam pickles its functions by that
    # name), sys.argv[0] its file; its cli.run ends the process with the command's exit code.
    sys.argv = [module, *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
