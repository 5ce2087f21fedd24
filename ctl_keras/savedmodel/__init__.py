"""Servable SavedModels (towers, recommender), TF Serving warmup, versions and clients."""

# Largest image (width x height) the exported signatures accept: 4096 x 4096 lets a 12 MP phone photo
# or a 4K frame through, and bounds one image's decode to about 50 MB of uint8 RGB plus its float32
# copy. Here, not in signatures.py, so the export CLI reads it without importing TensorFlow.
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
