"""Embed a catalog with the exported product tower on Apache Beam (RunInference), then assemble the index.

  source items ─► read (workers) ─► group by product id ─► keep/skip (catalog.choose)
               ─► RunInference(product tower, batched) ─► TFRecord shards in a staging dir
  driver: read the shards, sort by source order, CatalogIndex (catalog.assemble)

Beam's stock TensorFlow handler loads models with `tf.keras.models.load_model` through tensorflow_hub,
which cannot load this export (a plain SavedModel: Keras 3's load_model refuses the format, and
tensorflow_hub is not installed), so ProductTowerHandler calls the SavedModel's `serving_default`
signature, as TF Serving does. An image the tower cannot decode (a truncated JPEG with valid magic)
fails its whole batch; the handler then embeds that batch one image at a time and marks only the
culprits, which are counted as skipped, never killing the run.

Runner: Beam 2.77's default DirectRunner first tries the Prism runner, which downloads a binary and
fails offline, so no `--runner` (or `--runner=DirectRunner`) means the in-process Python FnApiRunner;
`--direct_num_workers`, `--direct_running_mode` and any other runner (Dataflow, Flink, Spark) pass
through. On a cluster, the export, the products and `--temp_location` (the staging dir) must be on
storage the workers see (gs://...).
"""

import collections
import hashlib
import logging
import os
import re
import shutil
import tempfile
from typing import Any, Iterable, Optional, Sequence

# Beam logs at import that the optional GCP client libraries are absent, and at INFO every stage it
# plans: noise on every `recommend index` run. Its warnings about the run itself stay visible.
logging.getLogger("apache_beam.io.gcp").setLevel(logging.ERROR)
logging.getLogger("apache_beam").setLevel(logging.WARNING)

import apache_beam as beam  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference  # noqa: E402
from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions, StandardOptions  # noqa: E402

from ctl_keras.utils import progress  # noqa: E402
from ctl_keras.retrieval import catalog  # noqa: E402
from ctl_keras.utils.process import pid_alive  # noqa: E402
from ctl_keras.savedmodel.exporter import PRODUCT, read_meta, resolve_version_dir  # noqa: E402

LOCAL_RUNNER = "FnApiRunner"
STAGING_PREFIX = ".tmp-embed-"  # + "<pid>-<random>": the staging dir of one run, removed at its end
UNCHANGED = "unchanged"  # an update's product whose image is already in the index: not re-embedded


def pipeline_options(beam_args: Sequence[str] = ()) -> PipelineOptions:
    """Standard Beam options from the command line's leftover flags, with the offline local runner pinned."""
    options = PipelineOptions(list(beam_args))
    standard = options.view_as(StandardOptions)
    if standard.runner in (None, "DirectRunner"):
        standard.runner = LOCAL_RUNNER
    return options


class _Tower:
    """The loaded SavedModel and its signature (holding the object keeps its variables alive)."""

    def __init__(self, version_dir: str):
        self.loaded = tf.saved_model.load(version_dir)
        self.signature = self.loaded.signatures["serving_default"]

    def __call__(self, images: Sequence[bytes]) -> np.ndarray:
        return self.signature(image_bytes=tf.constant(list(images), tf.string))["product_embedding"].numpy()


class ProductTowerHandler(ModelHandler[bytes, PredictionResult, _Tower]):
    """RunInference handler for the product tower SavedModel: image bytes in, f_p (or None) out."""

    def __init__(self, version_dir: str, batch_size: int = 32):
        # min = max: fixed-size batches, one signature call each (the last of a bundle may be smaller).
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self._version_dir = version_dir

    def load_model(self) -> _Tower:
        return _Tower(self._version_dir)

    def run_inference(self, batch: Sequence[bytes], model: _Tower,
                      inference_args: Optional[dict[str, Any]] = None) -> Iterable[PredictionResult]:
        try:
            embeddings = list(model(batch))
        except tf.errors.InvalidArgumentError:
            embeddings = [self._one(model, image) for image in batch]
        return [PredictionResult(image, embedding) for image, embedding in zip(batch, embeddings)]

    @staticmethod
    def _one(model: _Tower, image: bytes):
        try:
            return model([image])[0]
        except tf.errors.InvalidArgumentError:
            return None  # undecodable: counted as corrupt_image downstream

    def get_num_bytes(self, batch: Sequence[bytes]) -> int:
        return sum(len(image) for image in batch)

    def get_metrics_namespace(self) -> str:
        return "ctl_keras_product_tower"


def _feature(value) -> tf.train.Feature:
    if isinstance(value, int):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _encode(key: str = "", product_id: str = "", category: int = -1, embedding=None, skipped: str = "",
            sha: str = "") -> bytes:
    """One staged result: an embedded product, or a skip reason. Embeddings travel as raw float32 bytes."""
    emb = b"" if embedding is None else np.asarray(embedding, np.float32).tobytes()
    return tf.train.Example(features=tf.train.Features(feature={
        "key": _feature(key.encode()), "product_id": _feature(product_id.encode()), "category": _feature(category),
        "embedding": _feature(emb), "skipped": _feature(skipped.encode()),
        "image_sha256": _feature(sha.encode())})).SerializeToString()


def _decode(raw: bytes) -> tuple:
    f = tf.train.Example.FromString(raw).features.feature
    value = lambda name: f[name].bytes_list.value[0]
    return (value("key").decode(), value("product_id").decode(), int(f["category"].int64_list.value[0]),
            np.frombuffer(value("embedding"), np.float32), value("skipped").decode(), value("image_sha256").decode())


class _Choose(beam.DoFn):
    """Group of one product id -> the record to embed (keyed for RunInference) + tagged skip records.

    `known` {product_id: (image sha256, category name)} (an update of an existing index): a product
    whose image is the one already embedded, filed under the same category, is not embedded again,
    only counted as "unchanged". The same image under another category is a change (a move).
    """

    def __init__(self, categories, dedup_silently: bool, known=None, tick=None):
        self.categories, self.dedup_silently, self.known = tuple(categories), dedup_silently, known or {}
        self.tick = tick or (lambda n: None)

    def process(self, element):
        records = list(element[1])
        kept, skipped = catalog.choose(records, self.categories, self.dedup_silently)
        embeds = kept is not None and self.known.get(kept[1]) != (hashlib.sha256(kept[3]).hexdigest(), kept[2])
        self.tick(len(records) - embeds)  # every record read is accounted for; an embedded one by _result
        for reason in skipped:
            yield beam.pvalue.TaggedOutput("skipped", _encode(skipped=reason))
        if kept is not None:
            key, product_id, category, image = kept
            sha = hashlib.sha256(image).hexdigest()
            if self.known.get(product_id) == (sha, category):
                yield beam.pvalue.TaggedOutput("skipped", _encode(product_id=product_id, skipped=UNCHANGED))
            else:
                yield (key, product_id, self.categories.index(category), sha), image


def _read(item, kind, root, tick=None):
    for record in catalog.read_item(kind, root, *item):
        if tick is not None:
            tick.add_total(1)  # the progress total is what has been read (known once reading ends)
        yield record


def _result(element, tick=None) -> bytes:
    (key, product_id, category, sha), result = element
    if tick is not None:
        tick(1)
    if result.inference is None:
        return _encode(skipped="corrupt_image")
    return _encode(key, product_id, category, result.inference, sha=sha)


def _run(source: catalog.Source, version_dir: str, categories, batch_size: int, staging: str,
         options: PipelineOptions, known=None, tick=None) -> None:
    """`tick`: a ctl_keras.utils.progress ticker (reports only from this process: the local runner)."""
    handler = KeyedModelHandler(ProductTowerHandler(version_dir, batch_size))
    with beam.Pipeline(options=options) as p:
        records = (p | "Items" >> beam.Create(list(enumerate(source.items)))
                   | "Read" >> beam.FlatMap(_read, source.kind, source.root, tick))
        chosen = (records | "ById" >> beam.Map(lambda r: (r[1], r)) | "Group" >> beam.GroupByKey()
                  | "Choose" >> beam.ParDo(_Choose(categories, source.dedup_silently, known, tick)).with_outputs(
                      "skipped", main="embed"))
        embedded = chosen.embed | "Embed" >> RunInference(handler) | "Encode" >> beam.Map(_result, tick)
        _ = ((embedded, chosen.skipped) | "All" >> beam.Flatten()
             | "Write" >> beam.io.WriteToTFRecord(f"{staging}/part", file_name_suffix=".tfrecord"))


def remove_dead_staging(parent: str) -> list[str]:
    """Remove `.tmp-embed-<pid>-*` directories in `parent` whose process is gone (a SIGKILLed run's
    staging). Nothing else: not other names, not symlinks, not a live process's (even a recycled pid)."""
    removed = []
    for name in os.listdir(parent):
        match = re.fullmatch(re.escape(STAGING_PREFIX) + r"(\d+)-[A-Za-z0-9_]+", name)
        path = os.path.join(parent, name)
        if not match or os.path.islink(path) or not os.path.isdir(path) or pid_alive(int(match.group(1))):
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def build_index(export_dir: str, products: str, *, version: Optional[int] = None, batch_size: int = 32,
                beam_args: Sequence[str] = (), staging_parent: Optional[str] = None, known=None):
    """Embed every product with `<export_dir>/product_tower/<version or latest>` -> CatalogIndex.

    known: {product_id: (image sha256, category name)} of an index being updated (retrieval/update.py):
    those products are embedded only if their image or category changed; the others are counted in
    meta["unchanged"] and the returned index may then be empty.
    """
    version_dir = resolve_version_dir(export_dir, PRODUCT, version)
    meta = read_meta(version_dir)
    categories = tuple(meta["categories"])
    source = catalog.resolve_source(products, categories)
    options = pipeline_options(beam_args)
    temp_location = options.view_as(GoogleCloudOptions).temp_location
    if temp_location:  # a cluster's workers cannot write into the driver's local directories
        staging = f"{temp_location.rstrip('/')}/ctl-index-{os.getpid()}-{np.random.default_rng().integers(1 << 62)}"
    else:
        os.makedirs(staging_parent or ".", exist_ok=True)
        remove_dead_staging(staging_parent or ".")
        staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=staging_parent)
    try:
        with progress.Progress(desc="index: embed", unit="product") as bar:
            _run(source, os.path.abspath(version_dir) if "://" not in version_dir else version_dir,
                 categories, batch_size, staging, options, known, bar.ticker())
        rows, skipped, unchanged = [], collections.Counter(), []
        files = sorted(tf.io.gfile.glob(f"{staging}/part*.tfrecord"))
        for raw in (tf.data.TFRecordDataset(files).as_numpy_iterator() if files else ()):
            key, product_id, category, embedding, reason, sha = _decode(raw)
            if reason == UNCHANGED:
                unchanged.append(product_id)
            elif reason:
                skipped[reason] += 1
            else:
                rows.append((key, product_id, category, embedding, sha))
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    return catalog.assemble(rows, skipped, categories, {
        "tower_version": meta["version"], "model_fingerprint": meta["model_fingerprint"],
        "export_dir": os.path.abspath(export_dir), "source": catalog.absolute_source(products),
        "sources": [catalog.absolute_source(products)],
        "runner": options.view_as(StandardOptions).runner}, products, allow_empty=known is not None,
        unchanged=unchanged)
