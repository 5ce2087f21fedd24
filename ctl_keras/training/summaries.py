"""TensorBoard output under <model_dir>/tensorboard/: scalars, attention overlays, projector files.

Open it with `tensorboard --logdir <model_dir>/tensorboard` (the projector tab shows the product
embeddings coloured by category).
"""

from __future__ import annotations

import glob
import os

import matplotlib
import numpy as np
import tensorflow as tf
from tensorboard.plugins import projector

from ctl_keras.utils.atomic import atomic_write
from ctl_keras.model.run_dir import TENSORBOARD_DIR

EMBEDDING_TENSOR = "embedding/.ATTRIBUTES/VARIABLE_VALUE"


def read_scalars(model_dir: str, tag: str) -> list[float]:
    """The values of scalar `tag` (e.g. "train/loss") in <model_dir>/tensorboard, in step order."""
    values = {}
    for path in glob.glob(os.path.join(os.fspath(model_dir), TENSORBOARD_DIR, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == tag:
                    values[event.step] = float(tf.make_ndarray(value.tensor))
    return [values[step] for step in sorted(values)]


def overlay_attention(images: np.ndarray, attention: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a jet-coloured attention map over each scene: uint8 [n,S,S,3] + [n,g,g] -> uint8 [n,S,S,3].

    Each map is scaled to its own 0..1 range so that the most attended region is always red, whatever
    the grid size (a uniform map of 49 cells has weights of 0.02 and would look black otherwise).
    """
    images = np.asarray(images)
    attention = np.asarray(attention, dtype=np.float32)
    size = images.shape[1:3]
    # Nearest-neighbour keeps the grid cells visible as blocks: they are what the model attends over.
    maps = tf.image.resize(attention[..., None], size, method="nearest").numpy()[..., 0]
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    maps = np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0)
    colours = matplotlib.colormaps["jet"](maps)[..., :3] * 255.0
    blended = (1.0 - alpha) * images.astype(np.float32) + alpha * colours
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


class Summaries:
    """One event-file writer for the run; every method writes at a given epoch (the TensorBoard step)."""

    def __init__(self, model_dir: str):
        self.logdir = os.path.join(model_dir, TENSORBOARD_DIR)
        os.makedirs(self.logdir, exist_ok=True)
        self.writer = tf.summary.create_file_writer(self.logdir)

    def scalars(self, step: int, values: dict[str, float]) -> None:
        with self.writer.as_default():
            for tag, value in values.items():
                tf.summary.scalar(tag, float(value), step=step)
        self.writer.flush()

    def attention(self, step: int, images, attention, names) -> None:
        overlays = overlay_attention(images, attention)
        with self.writer.as_default():
            tf.summary.image("val/attention", overlays, step=step, max_outputs=len(overlays),
                             description="category-guided attention over validation scenes: "
                             + ", ".join(str(n) for n in names))
        self.writer.flush()

    def projector(self, ids, categories, matrix) -> None:
        """Product embeddings for the projector: a checkpoint, metadata.tsv (id, category), config."""
        matrix = np.asarray(matrix, dtype=np.float32)
        if len(ids) != matrix.shape[0] or len(categories) != matrix.shape[0]:
            raise ValueError(f"{len(ids)} ids and {len(categories)} categories for {matrix.shape[0]} embeddings")

        def write_metadata(tmp: str) -> None:
            with open(tmp, "w") as f:
                f.write("id\tcategory\n")  # a header is required once there is more than one column
                for pid, cat in zip(ids, categories):
                    f.write(f"{_tsv(pid)}\t{_tsv(cat)}\n")

        atomic_write(os.path.join(self.logdir, "metadata.tsv"), write_metadata)
        checkpoint = tf.train.Checkpoint(embedding=tf.Variable(matrix, name="product_embeddings"))
        # save() also writes the "checkpoint" index the projector looks for, with a relative path,
        # so the logdir can be moved or copied; a fresh Checkpoint always saves as embedding.ckpt-1.
        checkpoint.save(os.path.join(self.logdir, "embedding.ckpt"))
        config = projector.ProjectorConfig()
        embedding = config.embeddings.add()
        embedding.tensor_name = EMBEDDING_TENSOR
        embedding.metadata_path = "metadata.tsv"
        projector.visualize_embeddings(self.logdir, config)

    def close(self) -> None:
        self.writer.close()


def _tsv(value) -> str:
    if isinstance(value, bytes):
        value = value.decode()
    return str(value).replace("\t", " ").replace("\n", " ")
