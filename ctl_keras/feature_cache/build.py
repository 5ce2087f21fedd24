"""Compute the frozen backbone's features once per image and view, and write them to disk atomically.

On-disk layout of a cache directory (everything float16 to halve the disk and page-cache footprint;
the heads see float32, and float16's ~3 significant digits are far below the augmentation noise):

    manifest.json                       written last; identity of the data + config fields below
    <split>/scene_pool5.npy             [N, V, 2048]         one row per pair
    <split>/scene_local.npy             [N, V, g, g, 1024]
    <split>/product_pool5.npy           [M, V, 2048]         one row per product of the split
    <split>/index.npz                   pair_ids, scene_category, positive_row, product_category
    <split>/ids.json                    scene_ids, positive_ids, product_ids (strings)

V = config.num_views for train (augmented with pipeline.train_view) and 1 for val/test (center view).

Scenes: val/test are ALWAYS the CTL-cropped scene, because the task (and so model selection and the
test score) is recommending a product that is not visible in the scene. `full_scene=True` changes only
the train split, whose scenes then come from `full_scene_jpeg` (the paper's "train with full images").
The whole directory is built under a temporary sibling name and renamed into place, so an interrupted
build never leaves something that looks like a cache: manifest.json, inside the renamed directory, is
the completion marker and appears in one step. Several workers sharing one cache: see coordination.py.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import shutil
import zlib

import numpy as np
import tensorflow as tf
from absl import logging

from ctl_keras.utils import atomic
from ctl_keras.utils import progress
from ctl_keras.utils.process import pid_alive
from ctl_keras.config import LOCAL_DIM, POOL5_DIM, SALT_CACHE_VIEWS, SPLITS
from ctl_keras.data import dataset_dir, pipeline
from ctl_keras.feature_cache import coordination

FORMAT = "ctl_keras feature cache v1"
# Config fields whose change makes cached features wrong.
CONFIG_KEYS = ("dataset", "image_size", "resize_size", "local_grid", "backbone_weights", "num_views", "seed")
_SCENE, _PRODUCT = 0, 1
_BATCH = 32  # images per backbone call


def identity(config, data_dir, full_scene: bool, backbone_precision: str = "float32") -> dict:
    """What the cache's contents depend on: the data manifest's bytes and the view/backbone config.

    `backbone_precision` (resolved: float32 | bfloat16) is a key only when bfloat16, so float32 caches
    built before the switch existed stay valid and a float32 and a bfloat16 cache never match."""
    path = os.path.join(data_dir, "manifest.json")
    dataset_dir.read_manifest(data_dir)  # clear error when the dataset is not built
    with open(path, "rb") as f:
        data_hash = hashlib.sha256(f.read()).hexdigest()
    ident = {k: getattr(config, k) for k in CONFIG_KEYS}
    ident["full_scene"] = bool(full_scene)  # train scenes only
    if full_scene:
        # Full-scene caches built before val/test were always cropped lack this key, so they rebuild.
        ident["full_scene_splits"] = ["train"]
    ident["data_manifest_sha256"] = data_hash
    if backbone_precision != "float32":
        ident["backbone_precision"] = backbone_precision
    weights = config.backbone_weights
    if weights not in ("none", "imagenet") and os.path.exists(weights):
        st = os.stat(weights)
        ident["backbone_file"] = {"size": st.st_size, "mtime": int(st.st_mtime)}
    return ident


def view_seed(config, kind: int, view: int, key) -> tf.Tensor:
    """int64 [2] stateless seed of (config.seed, view, image id); scenes and products never share one."""
    base = tf.constant([int(config.seed), SALT_CACHE_VIEWS + kind], tf.int64)  # apart from the pipeline's salts
    fold = tf.random.experimental.stateless_fold_in
    return fold(fold(base, tf.constant(view, tf.int64)), tf.cast(key, tf.int64))


def _product_key(product_id: str) -> int:
    return zlib.crc32(product_id.encode("utf-8"))


def _views(config, jpeg, kind, key, num_views: int, train: bool):
    image = pipeline.decode_image(jpeg)
    if not train:
        return tf.expand_dims(pipeline.eval_view(image, config), 0)
    return tf.stack([pipeline.train_view(image, view_seed(config, kind, v, key), config)
                     for v in range(num_views)])


def _run_backbone(call, images_ds, rows: int, views: int, outputs: dict, bar):
    """Fill the memmaps in `outputs` ({"pool5": mm, "local": mm}) from a dataset of [V,S,S,3] stacks."""
    start = 0
    for stack in images_ds.batch(max(1, _BATCH // views)).prefetch(2):
        b = int(stack.shape[0])
        feats = call(tf.reshape(stack, [b * views, *stack.shape[2:]]))
        for name, mm in outputs.items():
            value = feats[name].numpy().astype(np.float16)
            mm[start:start + b] = value.reshape(b, views, *value.shape[1:])
        start += b
        bar.update(b * views)
    if start != rows:
        raise ValueError(f"expected {rows} rows, the dataset gave {start}")


def _build_split(config, data_dir, split, out, call, full_scene, progbar_total):
    train = split == "train"
    views = config.num_views if train else 1
    pairs = [{k: ex[k].numpy() for k in ("pair_id", "scene_id", "product_id", "category_index")}
             for ex in pipeline.raw_pairs(data_dir, split)]
    products = [{k: ex[k].numpy() for k in ("product_id", "category_index")}
                for ex in pipeline.raw_products(data_dir, split)]
    product_ids = [p["product_id"].decode() for p in products]
    row_of = {pid: i for i, pid in enumerate(product_ids)}
    positive_ids = [p["product_id"].decode() for p in pairs]
    missing = sorted({pid for pid in positive_ids if pid not in row_of})
    if missing:
        raise ValueError(f"{split}: {len(missing)} positives are not among the split's products, e.g. {missing[0]!r}")
    os.makedirs(out)
    logging.info("feature cache: %s split, %d pairs, %d products, %d view(s)", split, len(pairs), len(products), views)
    with progress.Progress(total=progbar_total(len(pairs), len(products), views), desc=f"feature cache: {split}",
                           unit="image") as bar:
        _write_features(config, data_dir, split, out, call, full_scene, pairs, product_ids, views, bar)
    np.savez(os.path.join(out, "index.npz"),
             pair_ids=np.array([p["pair_id"] for p in pairs], np.int64),
             scene_category=np.array([p["category_index"] for p in pairs], np.int32),
             positive_row=np.array([row_of[pid] for pid in positive_ids], np.int64),
             product_category=np.array([p["category_index"] for p in products], np.int32))
    with open(os.path.join(out, "ids.json"), "w") as f:
        json.dump({"scene_ids": [p["scene_id"].decode() for p in pairs], "positive_ids": positive_ids,
                   "product_ids": product_ids}, f)
    return {"pairs": len(pairs), "products": len(products), "views": views,
            "scenes": "full" if full_scene and train else "cropped"}


def _reserved(memmap: np.memmap) -> np.memmap:
    """Allocate a new memmap's blocks now: open_memmap makes a sparse file, and a page written into it on a
    full disk kills the process with SIGBUS (no Python error, no clean-up). posix_fallocate says ENOSPC
    first, as an OSError naming the file."""
    if hasattr(os, "posix_fallocate"):
        fd = os.open(memmap.filename, os.O_RDWR)
        try:
            os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a filesystem without it: as before
                raise OSError(e.errno, e.strerror, memmap.filename) from None
        finally:
            os.close(fd)
    return memmap


def _write_features(config, data_dir, split, out, call, full_scene, pairs, product_ids, views, bar) -> None:
    """The split's memmaps: scene pool5 + local, product pool5 (`bar` counts images x views)."""
    train, g = split == "train", config.local_grid

    mm = lambda name, shape: _reserved(np.lib.format.open_memmap(os.path.join(out, name), "w+", np.float16, shape))
    scene_out = {"pool5": mm("scene_pool5.npy", (len(pairs), views, POOL5_DIM)),
                 "local": mm("scene_local.npy", (len(pairs), views, g, g, LOCAL_DIM))}
    jpeg_key = "full_scene_jpeg" if full_scene and train else "scene_jpeg"
    scene_ds = pipeline.raw_pairs(data_dir, split).map(
        lambda ex: _views(config, ex[jpeg_key], _SCENE, ex["pair_id"], views, train),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    _run_backbone(call, scene_ds, len(pairs), views, scene_out, bar)

    product_out = {"pool5": mm("product_pool5.npy", (len(product_ids), views, POOL5_DIM))}
    keys = tf.constant([_product_key(pid) for pid in product_ids], tf.int64)
    product_ds = tf.data.Dataset.zip(pipeline.raw_products(data_dir, split), tf.data.Dataset.from_tensor_slices(keys))
    product_ds = product_ds.map(
        lambda ex, key: _views(config, ex["product_jpeg"], _PRODUCT, key, views, train),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    _run_backbone(call, product_ds, len(product_ids), views, product_out, bar)
    for m in (*scene_out.values(), *product_out.values()):
        m.flush()


def _remove_stale_temps(cache_dir: str) -> None:
    """Temp dirs of builds whose process died (SIGKILL) are garbage; live ones are left alone."""
    for path in glob.glob(f"{cache_dir}.tmp-*"):
        owner = path.rsplit("-", 1)[1]
        if not owner.isdigit() or not pid_alive(int(owner)):
            shutil.rmtree(path, ignore_errors=True)


def build(config, data_dir, cache_dir, backbone, full_scene: bool = False, jit_compile: bool = False,
          backbone_precision: str = "float32", min_agreement: float | None = None) -> None:
    """Write a complete cache at `cache_dir` (replacing an outdated one) or nothing at all.

    `full_scene`: the train split's scenes are uncropped; val/test scenes are cropped either way.
    `jit_compile`: run the backbone through XLA (features equal within float tolerance).
    `backbone_precision` (resolved): bfloat16 runs `backbone`'s bfloat16 copy, after measuring its agreement
    with float32 on test images (manifest "backbone_agreement"); below `min_agreement` nothing is written.
    """
    if config.num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {config.num_views}")
    cache_dir = os.path.abspath(os.fspath(cache_dir))
    ident = identity(config, data_dir, full_scene, backbone_precision)
    agreement = None
    if backbone_precision == "bfloat16":
        backbone, agreement = _bf16_checked(config, data_dir, backbone, min_agreement)
    os.makedirs(os.path.dirname(cache_dir), exist_ok=True)
    _remove_stale_temps(cache_dir)
    tmp = f"{cache_dir}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    heartbeat = coordination.Heartbeat(cache_dir + coordination.BUILDING_SUFFIX)
    total = lambda pairs, products, views: (pairs + products) * views
    # One trace for every split and batch size (tracing ResNet50 costs seconds).
    spec = tf.TensorSpec([None, config.image_size, config.image_size, 3], tf.float32)
    call = tf.function(lambda x: backbone(x, training=False), input_signature=[spec], jit_compile=jit_compile)
    try:
        splits = {s: _build_split(config, data_dir, s, os.path.join(tmp, s), call, full_scene, total)
                  for s in SPLITS}
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            extra = {} if agreement is None else {"backbone_agreement": agreement}
            json.dump({"format": FORMAT, "identity": ident, "splits": splits, **extra}, f, indent=1)
        atomic.publish_dir(tmp, cache_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        heartbeat.stop()


def _bf16_checked(config, data_dir, backbone, floor):
    """(the bfloat16 copy of `backbone`, its agreement with float32): L2-normalized pool5 of
    agreement.dataset_sample's scenes and products, the scenes' top-10 among those products; raises below
    `floor`."""
    from ctl_keras.model import agreement, precision  # noqa: PLC0415

    bf16 = precision.bf16_backbone(backbone)
    sample = agreement.dataset_sample(config, data_dir)
    out = {}
    for name, model in (("float32", backbone), ("bfloat16", bf16)):
        call = tf.function(lambda x, m=model: m(x, training=False)["pool5"])
        out[name] = agreement.normalized(call(sample["scenes"])), agreement.normalized(call(sample["products"]))
    result = agreement.compare(out["float32"][0], out["bfloat16"][0], out["float32"][1], out["bfloat16"][1])
    result["sample"] = f"{sample['source']} (L2-normalized pool5)"
    logging.info("feature cache: %s", agreement.line(result))
    agreement.check_floor(result, floor, "feature cache refused")
    return bf16, result
