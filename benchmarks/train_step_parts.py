"""The measurements of benchmarks/train_step.py (see its docstring): host, roofline, switches, variance."""

from __future__ import annotations

import gc
import os
import statistics
import time

import numpy as np
import timing
from timing import interleaved_times, wall_times


def median_epoch(run, repeats: int) -> tuple[float, list[float]]:
    """Median seconds of `run()` over `repeats` calls after one untimed call (traces), and all times."""
    times = wall_times(run, repeats, warmup=1)
    return statistics.median(times), times


def trainer_parts(config, strategy, *, steps_per_execution=1, jit_compile=False):
    """(step_fn, models) of the real loop for `config` (features in, one replica)."""
    from ctl_keras.model.ctl import build_ctl
    from ctl_keras.training.loop import TripletTask
    from ctl_keras.training.optimizer import make_optimizer
    from ctl_keras.training.step import make_train_step

    with strategy.scope():
        models = build_ctl(config)
        triplet = models.triplet_model(from_features=True)
        optimizer = make_optimizer(config)
        variables = list(models.heads.trainable_variables)
        optimizer.build(variables)
    step = make_train_step(strategy, TripletTask(triplet, config.margin), optimizer, variables, config.batch_size,
                           steps_per_execution=steps_per_execution, jit_compile=jit_compile)
    return step, models


def feature_batches(config, steps: int):
    """`steps` random feature batches in memory (no input cost): a tf.data dataset."""
    import numpy as np
    import tensorflow as tf

    from ctl_keras.config import LOCAL_DIM, POOL5_DIM

    rng = np.random.default_rng(0)
    n, g = steps * config.batch_size, config.local_grid
    data = {"scene_pool5": rng.normal(size=(n, POOL5_DIM)), "positive_pool5": rng.normal(size=(n, POOL5_DIM)),
            "negative_pool5": rng.normal(size=(n, POOL5_DIM)), "scene_local": rng.normal(size=(n, g, g, LOCAL_DIM))}
    data = {k: v.astype(np.float32) for k, v in data.items()}
    data["category"] = rng.integers(0, len(config.categories), n).astype(np.int32)
    return tf.data.Dataset.from_tensor_slices(data).batch(config.batch_size).cache()


def step_input(step, data):
    """`data` (in-memory batches) in the shape `step` reads, itself in memory: groups of N stacked batches
    for one XLA launch per N steps (training.step.stack_batches), as the feature cache serves them."""
    from ctl_keras.training.step import stack_batches

    ds = stack_batches(step, data).cache()
    list(ds)
    return ds


def host(flags) -> dict:
    import keras
    import tensorflow as tf

    from ctl_keras.training.loop import device_batches
    from ctl_keras.training.step import run_epoch

    config = timing.config(embedding_dim=8, hidden_dim=8, local_grid=1, dropout=0.0)
    steps = flags.host_steps
    data = feature_batches(config, steps)
    list(data)  # fill the cache: epochs below read memory
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    out = {"steps_per_epoch": steps, "heads": "embedding 8, hidden 8, grid 1"}

    def loop_epoch(n, jit):
        step, _ = trainer_parts(config, strategy, steps_per_execution=n, jit_compile=jit)
        ds = step_input(step, data)
        return lambda: run_epoch(step, device_batches(strategy, ds), 1, steps, progress=False)

    variants = {f"ms_per_step_at_{n}_per_call" + ("_xla" if jit else ""): loop_epoch(n, jit)
                for jit in (False, True) for n in (1, 4, flags.per_call, 64)}
    # Reference: a bare tf.function step of a tiny Dense model, one call per batch, no strategy.
    dense = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    opt = keras.optimizers.Adam(1e-3)
    x = tf.random.normal([16, 8])

    @tf.function
    def bare(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(dense(x))
        opt.apply_gradients(zip(tape.gradient(loss, dense.trainable_variables), dense.trainable_variables))
        return loss

    def bare_epoch():
        for _ in range(steps):
            float(bare(x))

    variants["bare_step_ms"] = bare_epoch
    # Round by round, so that the machine's load and slow spells hit every variant alike.
    for name, times in interleaved_times(variants, flags.repeats).items():
        out[name] = 1000 * statistics.median(times) / steps

    # Input alone: one element of the same batches through a plain vs a distributed iterator (why the
    # one-device loop iterates the plain dataset: training.loop.device_batches).
    @tf.function
    def drain(iterator):
        count = 0
        for _ in tf.range(steps):
            if not iterator.get_next_as_optional().has_value():
                break
            count += 1
        return count

    # tf.data's `batch(N)` of those in-memory batches: why the feature cache gathers a group at once.
    for name, make in (("plain", lambda: iter(data)),
                       ("distributed", lambda: iter(strategy.experimental_distribute_dataset(data))),
                       (f"tf_data_batch_{flags.per_call}", lambda: iter(data.batch(flags.per_call)))):
        seconds, _ = median_epoch(lambda: drain(make()), flags.repeats)
        out[f"iterator_ms_per_batch_{name}"] = 1000 * seconds / steps
    one, many = out["ms_per_step_at_1_per_call"], out[f"ms_per_step_at_{flags.per_call}_per_call"]
    out["host_time_ratio_1_vs_N"] = one / many
    out["loop_overhead_over_bare_ms_at_1"] = one - out["bare_step_ms"]
    best = out[f"ms_per_step_at_{flags.per_call}_per_call_xla"]
    out["host_time_ratio_1_vs_N_xla"] = one / best
    out["loop_overhead_over_bare_ms_at_N_xla"] = best - out["bare_step_ms"]
    return out


def _demo_config(**overrides):

    return timing.config(**overrides)


def _cache(flags, config):
    from ctl_keras.feature_cache import FeatureCache, default_cache_dir
    from ctl_keras.model.ctl import build_ctl

    cache_dir = flags.cache_dir or default_cache_dir(config, flags.data_dir, False)
    return FeatureCache.build_or_load(config, flags.data_dir, cache_dir, build_ctl(config).backbone)


def _cached_epoch_fn(flags, config, step, strategy, features):
    """One real cached epoch as training.loop runs it (same dataset, filter, device input)."""
    from ctl_keras.training import loop
    from ctl_keras.training.step import run_epoch

    options = loop.RunOptions(data_dir=flags.data_dir, model_dir="(unused)", feature_cache=True)
    epoch = [0]

    def run():
        epoch[0] += 1
        ds = loop.device_batches(strategy, loop._train_dataset(config, options, features, epoch[0], step))
        return run_epoch(step, ds, epoch[0], progress=False)

    return run


def step_flops(config) -> dict:
    """Matmul FLOPs of one cached train step of the hybrid model, from the layer shapes.

    Rows per head call: the global head embeds B scenes and 2B products, the local and attention heads
    B·g² regions. Forward 2·rows·in·out per Dense; backward adds the weight gradient (same count) and,
    except for a head's first Dense (its input is data), the input gradient (same count again).
    Elementwise work (BatchNorm, attention softmax, distances) is left out: it is < 2% here.
    """
    b, g = config.batch_size, config.local_grid
    from ctl_keras.config import LOCAL_DIM, POOL5_DIM

    h, d = config.hidden_dim, config.embedding_dim
    heads = {"global": (3 * b, POOL5_DIM), "local": (b * g * g, LOCAL_DIM), "attention": (b * g * g, LOCAL_DIM)}
    forward = backward = 0
    for rows, width in heads.values():
        first, second = 2 * rows * width * h, 2 * rows * h * d
        forward += first + second
        backward += first + 2 * second
    return {"forward_gflop": forward / 1e9, "backward_gflop": backward / 1e9, "total_gflop": (forward + backward) / 1e9}


def matmul_gflops(repeats: int, shape=(784, 1024, 256)) -> float:
    """Median GFLOP/s of a float32 [m,k]@[k,n] matmul, 50 per tf.function call (dispatch excluded)."""
    import tensorflow as tf

    m, k, n = shape
    a, w = tf.random.normal([m, k]), tf.random.normal([k, n])

    @tf.function
    def many(a, w):
        acc = tf.zeros([m, n])
        for _ in tf.range(50):
            acc += tf.matmul(a, w)
        return acc

    many(a, w).numpy()
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        many(a, w).numpy()
        rates.append(50 * 2 * m * k * n / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def backbone_flops(backbone) -> float:
    """Forward FLOPs of one image through the backbone's ResNet50 convolutions (2 per MAC)."""
    import keras

    total = 0
    extractor = backbone.get_layer("resnet50_features")
    for layer in extractor.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, oh, ow, _ = layer.output.shape
            total += 2 * oh * ow * cout * kh * kw * cin
    return float(total)


def roofline(flags) -> dict:
    import tensorflow as tf

    from ctl_keras.model.ctl import build_ctl
    from ctl_keras.training.loop import device_batches
    from ctl_keras.training.step import run_epoch

    config = _demo_config()
    peak = matmul_gflops(flags.repeats)
    flops = step_flops(config)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    steps = 128
    data = feature_batches(config, steps)
    list(data)
    out = {"matmul_gflops": peak, "step": flops, "roofline_step_ms": flops["total_gflop"] / peak * 1000}
    n = flags.per_call
    for name, kwargs in (("default", {}), ("per_call", {"steps_per_execution": n}),
                         ("xla_and_per_call", {"jit_compile": True, "steps_per_execution": n})):
        step, _ = trainer_parts(config, strategy, **kwargs)
        ds = step_input(step, data)
        epoch = lambda: run_epoch(step, device_batches(strategy, ds), 1, steps, progress=False)
        seconds, _ = median_epoch(epoch, flags.repeats)
        ms = 1000 * seconds / steps
        out[f"{name}_step_ms"] = ms
        out[f"{name}_fraction_of_roofline"] = out["roofline_step_ms"] / ms
    backbone = build_ctl(config).backbone
    images = tf.random.uniform([32, config.image_size, config.image_size, 3], 0, 255)
    forward = tf.function(lambda x: backbone(x, training=False))
    seconds, _ = median_epoch(lambda: forward(images)["pool5"].numpy(), flags.repeats)
    gflop = backbone_flops(backbone) / 1e9
    out["backbone"] = {"image_size": config.image_size, "gflop_per_image": gflop, "images_per_second": 32 / seconds,
                       "fraction_of_roofline": gflop * 32 / seconds / peak}
    return out


SWITCHES = {  # name -> (config overrides, trainer options)
    "default (float32, 1 step/call, no XLA)": ({}, {}),
    "steps_per_execution=N": ({}, {"steps_per_execution": "N"}),
    "jit_compile": ({}, {"jit_compile": True}),
    "mixed_bfloat16": ({"precision": "mixed_bfloat16"}, {}),
    "jit_compile + steps_per_execution=N": ({}, {"jit_compile": True, "steps_per_execution": "N"}),
    "all three": ({"precision": "mixed_bfloat16"}, {"jit_compile": True, "steps_per_execution": "N"}),
}


def switches(flags) -> dict:
    import tensorflow as tf

    base = _demo_config()
    features = _cache(flags, base)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    out = {"per_call_N": flags.per_call}
    for name, (overrides, options) in SWITCHES.items():
        config = base.replace(**overrides)
        options = {k: flags.per_call if v == "N" else v for k, v in options.items()}
        step, _ = trainer_parts(config, strategy, **options)
        seconds, times = median_epoch(_cached_epoch_fn(flags, config, step, strategy, features), flags.repeats)
        out[name] = {"epoch_seconds_median": seconds, "epoch_seconds": times}
        print(f"  {name}: {seconds:.2f} s/epoch (median of {len(times)})", flush=True)
    default = out["default (float32, 1 step/call, no XLA)"]["epoch_seconds_median"]
    for name in SWITCHES:
        out[name]["speedup_vs_default"] = default / out[name]["epoch_seconds_median"]
    return out


def precision(flags) -> dict:
    """The cached epoch from a cache built under each --backbone_precisions (interleaved epochs, medians),
    and with the heads under mixed_bfloat16 (--mixed_precision) on the bfloat16 cache: the backbone's
    precision changes what the cache holds, not what the step computes (both caches are float16 on disk)."""
    import tensorflow as tf

    from ctl_keras.feature_cache import FeatureCache, default_cache_dir
    from ctl_keras.model import precision as precision_lib
    from ctl_keras.model.ctl import build_ctl

    base = _demo_config()
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    runs = {}
    for choice in flags.backbone_precisions:
        resolved = precision_lib.resolve(choice)[0]
        cache_dir = (os.path.join(flags.precision_cache_root, f"precision_{choice}") if flags.precision_cache_root
                     else default_cache_dir(base, flags.data_dir, False, resolved))
        if os.path.exists(os.path.join(cache_dir, "manifest.json")):
            features = FeatureCache(cache_dir)  # e.g. the feature_cache benchmark's, whatever its views
        else:
            features = FeatureCache.build_or_load(base, flags.data_dir, cache_dir, build_ctl(base).backbone,
                                                  backbone_precision=resolved)
        heads = {f"{choice} cache, float32 heads": "float32"}
        if resolved == "bfloat16":
            heads[f"{choice} cache, mixed_bfloat16 heads"] = "mixed_bfloat16"
        for name, policy in heads.items():
            config = base.replace(num_views=features.num_views, precision=policy)
            step, _ = trainer_parts(config, strategy)
            runs[name] = _cached_epoch_fn(flags, config, step, strategy, features)
    times = timing.interleaved_times(runs, flags.repeats)
    out = {name: {"epoch_seconds_median": statistics.median(t), "epoch_seconds": t} for name, t in times.items()}
    first = next(iter(out.values()))["epoch_seconds_median"]
    for name, r in out.items():
        r["vs_first"] = first / r["epoch_seconds_median"]
        print(f"  train step, {name}: {r['epoch_seconds_median']:.2f} s/epoch (median of {len(times[name])}), "
              f"{r['vs_first']:.2f}x the first | {timing.machine_line()}", flush=True)
    return out


def variance(flags) -> dict:
    """Where a cached epoch's time goes and how much it varies: input alone, step alone, both."""
    import tensorflow as tf

    from ctl_keras.training.loop import device_batches
    from ctl_keras.training.step import run_epoch

    config = _demo_config()
    features = _cache(flags, config)
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    step, _ = trainer_parts(config, strategy)
    full = _cached_epoch_fn(flags, config, step, strategy, features)
    epoch = [0]

    def input_only():
        epoch[0] += 1
        for batch in features.train_dataset(config, epoch[0], config.batch_size):
            batch["scene_local"].numpy()

    batches = list(features.train_dataset(config, 0, config.batch_size).filter(
        lambda b: tf.shape(b["category"])[0] == config.batch_size))
    steps_ds = tf.data.Dataset.from_tensor_slices(tf.nest.map_structure(lambda *x: tf.stack(x), *batches)).cache()
    list(steps_ds)

    def step_only():
        run_epoch(step, device_batches(strategy, steps_ds), 1, progress=False)

    out = {}
    for name, fn in (("input_only", input_only), ("step_only", step_only), ("full_epoch", full)):
        collections = sum(s["collections"] for s in gc.get_stats())
        median, times = median_epoch(fn, max(flags.repeats, 6))
        gcs = sum(s["collections"] for s in gc.get_stats()) - collections
        out[name] = {"median_s": median, "min_s": min(times), "max_s": max(times), "seconds": times,
                     "max_over_min": max(times) / min(times), "python_gc_collections": gcs,
                     "cv": float(np.std(times) / np.mean(times))}
    return out


def breakdown(flags) -> dict:
    """Where one cached step's time goes: forward, forward + backward, the whole step, the step
    without dropout, and the step's main matmul, on in-memory batches, interleaved round by round so that load
    hits every variant alike; medians of `repeats` rounds of 40 steps in one tf.function each."""
    import keras
    import tensorflow as tf

    from ctl_keras.model.ctl import build_ctl
    from ctl_keras.training.loop import TripletTask
    from ctl_keras.training.optimizer import make_optimizer

    base = _demo_config()
    steps = 40
    data = feature_batches(base, steps)
    list(data)

    def make(config, what):
        keras.utils.set_random_seed(0)
        models = build_ctl(config)
        task = TripletTask(models.triplet_model(from_features=True), config.margin)
        variables = list(models.heads.trainable_variables)
        optimizer = make_optimizer(config)
        optimizer.build(variables)

        def one(batch):
            if what == "forward":
                return tf.reduce_mean(task.compute_loss(batch, True))
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean(task.compute_loss(batch, True))
            grads = tape.gradient(loss, variables)
            if what == "forward_backward":
                return loss + 0.0 * tf.add_n([tf.reduce_sum(g) for g in grads])
            optimizer.apply_gradients(zip(grads, variables))
            return loss

        @tf.function
        def run(iterator):
            total = 0.0
            for _ in tf.range(steps):
                total += one(next(iterator))
            return total

        return lambda: run(iter(data)).numpy()

    a, w = tf.random.normal([784, 1024]), tf.random.normal([1024, 256])

    @tf.function
    def matmuls():
        acc = tf.zeros([784, 256])
        for _ in tf.range(steps):
            acc += tf.matmul(a, w)
        return acc

    variants = {"forward": make(base, "forward"), "forward_backward": make(base, "forward_backward"),
                "step": make(base, "step"),
                "step_without_dropout": make(base.replace(dropout=0.0), "step"),
                "matmul_784x1024x256": lambda: matmuls().numpy()}
    times = interleaved_times(variants, flags.repeats)
    out = {f"{name}_ms": 1000 * statistics.median(t) / steps for name, t in times.items()}
    # The fastest round too: in this VM's slow spells every variant takes the same fixed time per call
    # (e.g. 31.6 ms per step for the step and forward + backward alike), whatever its work.
    out.update({f"{name}_min_ms": 1000 * min(t) / steps for name, t in times.items()})
    flops = step_flops(base)
    peak = 2 * 784 * 1024 * 256 / (out["matmul_784x1024x256_ms"] / 1000) / 1e9
    out.update(matmul_gflops=peak, step_gflop=flops["total_gflop"],
               roofline_step_ms=flops["total_gflop"] / peak * 1000)
    out["step_fraction_of_roofline"] = out["roofline_step_ms"] / out["step_ms"]
    out["fastest_step_fraction_of_roofline"] = out["roofline_step_ms"] / out["step_min_ms"]
    return out
