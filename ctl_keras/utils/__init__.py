"""Small utilities every layer may use: atomic writes and locks, logs, progress."""
