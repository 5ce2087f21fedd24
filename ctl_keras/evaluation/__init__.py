"""Scoring (AUC, Top-K, per-category) and reporting (tables, curves, JSON) shared by every method."""
