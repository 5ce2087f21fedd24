"""An independent saliency baseline for Table 3: spectral residual (Hou & Zhang, CVPR 2007).

The paper compares its attention with DeepSaliency, a detector trained to find salient objects that
knows nothing of the pair's product. The stand-in here is model-free and published: OpenCV's
`cv2.saliency.StaticSaliencySpectralResidual` (opencv-contrib), run on the same center view the
model sees, pooled to the g x g grid by cell means. It sees only the image: no model, no category,
no ground-truth product (unlike analysis/saliency.py's gradient map, which differentiates the score
of the pair's own positive product).
"""

from __future__ import annotations

import numpy as np

METHOD = "OpenCV StaticSaliencySpectralResidual (Hou & Zhang 2007; image only), cell means on the grid"


def _cv2():
    try:
        import cv2  # noqa: PLC0415 (optional dependency: the "analysis" extra)
    except ImportError:
        raise ValueError("spectral-residual saliency needs OpenCV with the contrib modules: "
                         "pip install opencv-contrib-python-headless (or ctl_keras[analysis])") from None
    if not hasattr(cv2, "saliency"):
        raise ValueError("this OpenCV has no cv2.saliency (contrib modules): install "
                         "opencv-contrib-python-headless instead of opencv-python")
    return cv2


def pixel_maps(images) -> np.ndarray:
    """uint8/float RGB [B, S, S, 3] -> [B, S, S] float32 spectral-residual saliency in [0, 1]."""
    cv2 = _cv2()
    detector = cv2.saliency.StaticSaliencySpectralResidual_create()
    images = np.clip(np.round(np.asarray(images)), 0, 255).astype(np.uint8)
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"expected RGB images [B, S, S, 3], got shape {images.shape}")
    out = np.zeros(images.shape[:3], np.float32)
    for i, image in enumerate(images):
        ok, saliency = detector.computeSaliency(np.ascontiguousarray(image[:, :, ::-1]))  # OpenCV wants BGR
        if not ok:
            raise ValueError(f"spectral-residual saliency failed on image {i} of the batch")
        out[i] = np.asarray(saliency, np.float32)
    return out


def grid_maps(images, grid: int) -> np.ndarray:
    """[B, g, g] cell means of the spectral-residual map."""
    from ctl_keras.analysis.saliency import pool_to_grid  # noqa: PLC0415

    return pool_to_grid(pixel_maps(images), grid)
