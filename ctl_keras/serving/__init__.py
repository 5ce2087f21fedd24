"""Servable SavedModels (towers, recommender), TF Serving warmup, versions and clients."""
