"""Training internals behind `ctl train`: loop, checkpoints, summaries, results."""
