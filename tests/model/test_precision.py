"""--backbone_precision: auto's resolution from given CPU flags and GPU capabilities, the agreement figures,
the floor, and the bfloat16 backbone (float32 outputs, the same weights, no global RNG drawn)."""

import random

import keras
import numpy as np
import pytest

from ctl_keras.model import agreement, precision

AMD_BF16 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_vnni avx512_bf16\n"
INTEL_AMX = "flags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n"
OLD_AVX512 = "flags\t\t: fpu avx2 avx512f avx512_vnni\n"
ARM = "Features\t: fp asimd bf16\n"  # aarch64's bf16 is not what oneDNN's x86 kernels use


@pytest.mark.parametrize("text, want", [(AMD_BF16, "bfloat16"), (INTEL_AMX, "bfloat16"), (OLD_AVX512, "float32"),
                                        (ARM, "float32"), ("", "float32")])
def test_auto_picks_bfloat16_only_with_native_cpu_instructions(text, want):
    got, why = precision.resolve("auto", cpuinfo_text=text, gpu_capabilities=[])
    assert got == want and why.startswith("auto:")


def test_auto_on_gpu_needs_compute_capability_8():
    assert precision.resolve("auto", OLD_AVX512, gpu_capabilities=[(8, 0)])[0] == "bfloat16"
    assert precision.resolve("auto", OLD_AVX512, gpu_capabilities=[(7, 5)])[0] == "float32"


def test_explicit_choices_and_unknown():
    assert precision.resolve("float32", AMD_BF16, [(9, 0)]) == ("float32", "as asked")
    assert precision.resolve("bfloat16", OLD_AVX512, [])[0] == "bfloat16"
    with pytest.raises(ValueError, match="must be one of"):
        precision.resolve("float16")


def test_reported_flags():
    assert precision.reported_cpu_flags(AMD_BF16) == "avx512f,avx512_vnni,avx512_bf16"
    assert precision.reported_cpu_flags("flags : fpu sse\n") == "none"


def test_agreement_of_float32_with_itself_is_perfect():
    rng = np.random.default_rng(0)
    q, p = agreement.normalized(rng.normal(size=(12, 8))), agreement.normalized(rng.normal(size=(30, 8)))
    a = agreement.compare(q, q.copy(), p, p.copy())
    assert a["cosine_min"] == pytest.approx(1.0) and a["query_cosine_median"] == pytest.approx(1.0)
    assert a["top_k_overlap_min"] == 10 and a["top_k_overlap_mean"] == 10.0 and a["max_abs_delta_d_star"] == 0.0
    agreement.check_floor(a, 0.999, "x")  # passes


def test_agreement_sees_a_perturbation_and_the_floor_refuses():
    rng = np.random.default_rng(1)
    q, p = agreement.normalized(rng.normal(size=(20, 8))), agreement.normalized(rng.normal(size=(40, 8)))
    noisy = agreement.normalized(q + rng.normal(scale=0.5, size=q.shape))
    a = agreement.compare(q, noisy, p, p, catalog=p)
    assert a["query_cosine_min"] < 0.99 and a["product_cosine_min"] == pytest.approx(1.0)
    assert a["top_k_overlap_min"] < 10 and a["max_abs_delta_d_star"] > 0.01 and a["searched"] == "catalog"
    with pytest.raises(ValueError, match="min_backbone_agreement=0.99"):
        agreement.check_floor(a, 0.99, "export refused")
    agreement.check_floor(a, None, "x")  # no floor: never refuses


@pytest.mark.slow
def test_bf16_backbone_float32_outputs_same_weights_and_no_rng_drawn():
    from ctl_keras.model.backbone import build_backbone

    keras.utils.set_random_seed(0)
    backbone = build_backbone(64, 2, "none")
    state = random.getstate()
    bf16 = precision.bf16_backbone(backbone)
    assert random.getstate() == state
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    conv = bf16.get_layer("resnet50_features").get_layer("conv1_conv")
    assert conv.dtype_policy.name == "bfloat16" and keras.backend.standardize_dtype(conv.kernel.dtype) == "bfloat16"
    original = backbone.get_layer("resnet50_features")
    bn = original.get_layer("conv1_bn")
    gamma, _, _, var = bn.get_weights()
    np.testing.assert_allclose(np.asarray(conv.kernel.numpy(), np.float32), original.get_layer("conv1_conv").kernel.numpy()
                               * gamma / np.sqrt(var + bn.epsilon), rtol=1e-2)  # bfloat16: 8 bits of mantissa
    assert isinstance(bf16.get_layer("resnet50_features").get_layer("conv1_bn"), precision.FoldedBatchNorm)
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    want, got = backbone(images, training=False), bf16(images, training=False)
    for key in ("pool5", "local"):
        assert keras.backend.standardize_dtype(got[key].dtype) == "float32" and got[key].shape == want[key].shape
    assert agreement.compare(agreement.normalized(want["pool5"]), agreement.normalized(got["pool5"]),
                             agreement.normalized(want["pool5"]), agreement.normalized(got["pool5"]))["cosine_min"] > 0.9
