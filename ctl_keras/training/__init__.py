"""Training internals behind `python -m ctl_keras.train`: loop, checkpoints, summaries, results."""
