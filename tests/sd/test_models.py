"""The SD 1.x networks: architecture against SD 1.4's checkpoints, every backend against the float64
numpy model, every paper switch on and off, checkpoints saved and loaded, bad folders and inputs."""

import json

import numpy as np
import pytest

from backends import Optimizations
from backends.optimizations import ablation
from reference.numerics import relative_frobenius_error
from reference.sd import CheckpointError, StableDiffusionPipeline, TextEncoder, UNet2DConditionModel, VAEDecoder
from reference.sd.layers import timestep_embedding
from reference.sd.text_encoder import SD14_TEXT_ENCODER
from reference.sd.unet import SD14_UNET
from reference.sd.vae import SD14_VAE

from ..helpers import THOROUGH
from .conftest import make_backend

#: relative Frobenius error of a whole tiny network in float32 storage against float64 (the op
#: tests' per-op bound is 1e-5; some 40 to 200 ops in a row, Winograd transforms included)
FP32_NETWORK_TOL = 1e-4
#: float16 storage (each op rounds its output to 11 bits: about 5e-4 per op)
FP16_NETWORK_TOL = 2e-2


# -- architecture --------------------------------------------------------------------------------


@pytest.mark.parametrize("cls, config, tensors, parameters", [
    (UNet2DConditionModel, SD14_UNET, 686, 859_520_964),
    (VAEDecoder, SD14_VAE, 140, 49_490_199),
    (TextEncoder, SD14_TEXT_ENCODER, 196, 123_060_480),
])
def test_sd14_parameter_inventory(cls, config, tensors, parameters):
    """SD 1.4's checkpoints: the UNet has 686 tensors and 859,520,964 parameters, CLIP's text model
    196 and 123,060,480, AutoencoderKL 83,653,863 of which the encoder and quant_conv hold 34,163,664."""
    shapes = cls.build({**cls.DEFAULTS, **config}).parameter_shapes()
    assert len(shapes) == tensors
    assert sum(int(np.prod(s)) for s in shapes.values()) == parameters


def test_sd14_names_and_shapes():
    unet = UNet2DConditionModel.build({**UNet2DConditionModel.DEFAULTS, **SD14_UNET}).parameter_shapes()
    assert unet["conv_in.weight"] == (320, 4, 3, 3)
    assert unet["time_embedding.linear_2.weight"] == (1280, 1280)
    assert unet["down_blocks.0.attentions.1.transformer_blocks.0.ff.net.0.proj.weight"] == (2560, 320)
    assert unet["down_blocks.0.attentions.1.transformer_blocks.0.ff.net.2.weight"] == (320, 1280)
    assert unet["down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight"] == (640, 768)
    assert unet["down_blocks.2.downsamplers.0.conv.weight"] == (1280, 1280, 3, 3)
    assert unet["mid_block.attentions.0.proj_in.weight"] == (1280, 1280, 1, 1)
    assert unet["up_blocks.1.resnets.0.conv_shortcut.weight"] == (1280, 2560, 1, 1)
    assert unet["up_blocks.3.resnets.0.conv1.weight"] == (320, 960, 3, 3)  # 640 from below + a 320 skip
    assert unet["up_blocks.3.resnets.2.conv1.weight"] == (320, 640, 3, 3)
    assert unet["up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_out.0.bias"] == (320,)
    assert "down_blocks.3.downsamplers.0.conv.weight" not in unet and "up_blocks.3.upsamplers.0.conv.weight" not in unet
    assert "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.bias" not in unet
    vae = VAEDecoder.build({**VAEDecoder.DEFAULTS, **SD14_VAE}).parameter_shapes()
    assert vae["decoder.mid_block.attentions.0.to_q.weight"] == (512, 512)
    assert vae["decoder.mid_block.attentions.0.to_q.bias"] == (512,)
    assert vae["decoder.up_blocks.2.resnets.0.conv_shortcut.weight"] == (256, 512, 1, 1)
    assert vae["decoder.conv_out.weight"] == (3, 128, 3, 3)
    clip = TextEncoder.build({**TextEncoder.DEFAULTS, **SD14_TEXT_ENCODER}).parameter_shapes()
    assert clip["text_model.encoder.layers.11.mlp.fc1.weight"] == (3072, 768)
    assert clip["text_model.embeddings.token_embedding.weight"] == (49408, 768)


class _Recording(dict):
    """A parameter dict that records which names a forward pass reads."""

    def __init__(self, *args):
        super().__init__(*args)
        self.read = set()

    def __getitem__(self, name):
        self.read.add(name)
        return super().__getitem__(name)


def test_every_parameter_is_used(tiny_unet_config, tiny_vae_config, tiny_text_config, unet_inputs, numpy_backend):
    """A parameter the forward pass never reads is a naming bug (it would load and be ignored)."""
    sample, t, context = unet_inputs
    for model, call in [
        (UNet2DConditionModel.random(tiny_unet_config, backend=numpy_backend), lambda m: m(sample, t, context)),
        (VAEDecoder.random(tiny_vae_config, backend=numpy_backend), lambda m: m(sample)),
        (TextEncoder.random(tiny_text_config, backend=numpy_backend), lambda m: m(np.arange(12).reshape(2, 6))),
    ]:
        model.params = _Recording(model.params)
        call(model)
        unused = set(model.params) - model.params.read  # (host_params: the CLIP embedding lookup)
        assert not unused, f"{type(model).__name__}: parameters never read: {sorted(unused)[:5]}"


def test_timestep_embedding_formula():
    t = np.array([0.0, 1.0, 999.0])
    emb = timestep_embedding(t, 8, flip_sin_to_cos=True, freq_shift=0)
    freqs = np.exp(-np.log(10000.0) * np.arange(4) / 4)
    np.testing.assert_allclose(emb, np.concatenate([np.cos(t[:, None] * freqs), np.sin(t[:, None] * freqs)], axis=1))
    shifted = timestep_embedding(t, 8, flip_sin_to_cos=False, freq_shift=1)
    freqs = np.exp(-np.log(10000.0) * np.arange(4) / 3)
    np.testing.assert_allclose(shifted, np.concatenate([np.sin(t[:, None] * freqs), np.cos(t[:, None] * freqs)], axis=1))


def test_text_encoder_is_causal(tiny_text_config, numpy_backend):
    """Changing token j changes the outputs at positions >= j and no others."""
    model = TextEncoder.random(tiny_text_config, backend=numpy_backend, dtype=np.float64)
    ids = np.array([[5, 17, 33, 2, 90, 41, 7, 64]])
    changed = ids.copy()
    changed[0, 4] = 11
    a, b = model(ids), model(changed)
    np.testing.assert_array_equal(a[:, :4], b[:, :4])
    assert np.all(np.abs(a[:, 4:] - b[:, 4:]).max(axis=-1) > 1e-6)


# -- backends against the float64 reference ------------------------------------------------------


def _tiny_models(configs, backend, dtype, seed=3):
    unet_config, vae_config, text_config = configs
    return (UNet2DConditionModel.random(unet_config, seed, backend=backend, dtype=dtype),
            VAEDecoder.random(vae_config, seed, backend=backend, dtype=dtype),
            TextEncoder.random(text_config, seed, backend=backend, dtype=dtype))


def _run(models, inputs, ids):
    unet, vae, text = models
    sample, t, context = inputs
    be = unet.backend
    return (be.to_numpy(unet(sample, t, context)).astype(np.float64),
            be.to_numpy(vae(sample)).astype(np.float64),
            be.to_numpy(text(ids)).astype(np.float64))


@pytest.fixture(scope="module")
def configs(tiny_unet_config, tiny_vae_config, tiny_text_config):
    return tiny_unet_config, tiny_vae_config, tiny_text_config


@pytest.fixture(scope="module")
def reference_outputs(configs, unet_inputs, numpy_backend):
    ids = np.random.default_rng(5).integers(0, 120, size=(2, 77))
    return ids, _run(_tiny_models(configs, numpy_backend, np.float64), unet_inputs, ids)


OPTIMIZATIONS = ablation()


@pytest.mark.parametrize("switch", list(OPTIMIZATIONS))
def test_networks_match_reference(backend_name, switch, configs, unet_inputs, reference_outputs):
    """UNet, VAE decoder and text encoder in float32 storage, with each paper switch on alone (and
    all of them), equal the float64 numpy networks within the float32 network bound."""
    if backend_name == "numpy" and switch not in ("none", "paper", "winograd4", "partial_softmax", "flash"):
        pytest.skip("the numpy backend's fused switches compute exactly the unfused reference")
    if backend_name == "jax" and switch not in ("none", "paper") and not THOROUGH:
        pytest.skip("JAX compiles each configuration's networks (minutes on CPU): the single switches run in "
                    "the thorough profile; tests/jax checks each switch per op")
    be = make_backend(backend_name, OPTIMIZATIONS[switch])
    ids, expected = reference_outputs
    got = _run(_tiny_models(configs, be, np.float32), unet_inputs, ids)
    for name, g, e in zip(("unet", "vae decoder", "text encoder"), got, expected):
        assert np.isfinite(g).all(), f"{name}: non-finite output"
        err = relative_frobenius_error(g, e)
        assert err < FP32_NETWORK_TOL, f"{name} on {backend_name} with {switch}: relative error {err:.2e}"


def test_switches_reach_every_layer():
    """With the paper's switches, the OpenCL UNet launches only fused GroupNorm and GEGLU kernels,
    Winograd for every 3x3 stride-1 convolution, and the partially fused softmax attention
    (launch names from the runtime's counters; unfused, all of them are absent)."""
    pytest.importorskip("pyopencl")
    from reference.sd.tiny import TINY_UNET

    rng = np.random.default_rng(0)
    sample = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    context = rng.standard_normal((1, 77, 32)).astype(np.float32)
    kernels = {}
    for name in ("none", "paper"):
        be = make_backend("opencl", OPTIMIZATIONS[name])
        unet = UNet2DConditionModel.random(TINY_UNET, 0, backend=be)
        with be.measure() as counters:
            unet(sample, 10, context)
        kernels[name] = counters.kernels
    none, paper = kernels["none"], kernels["paper"]
    assert len(paper) < len(none)
    assert not any("winograd" in k for k in none) and any("winograd" in k for k in paper)
    assert "softmax_rows" in none and "softmax_rows" not in paper and "softmax_stats" in paper
    unfused = {"group_mean", "group_var", "group_norm_apply", "split_halves", "erf_map", "conv2d_implicit_gemm"}
    assert unfused <= set(none)
    assert "group_norm_fused" in paper and "geglu" in paper
    # the only direct convolutions left are the 1x1 projections and the stride-2 downsampling
    assert paper.count("conv2d_implicit_gemm") == sum(1 for k in none if k == "conv2d_implicit_gemm") - paper.count(
        "winograd_output_transform")
    assert not {"group_mean", "group_var", "group_norm_apply", "split_halves", "erf_map"} & set(paper)


@pytest.mark.parametrize("backend_name_fp16", ["opencl", "jax"])
def test_networks_fp16_storage(backend_name_fp16, configs, unet_inputs, reference_outputs):
    pytest.importorskip("pyopencl" if backend_name_fp16 == "opencl" else "jax")
    be = make_backend(backend_name_fp16, Optimizations.paper())
    ids, expected = reference_outputs
    got = _run(_tiny_models(configs, be, np.float16), unet_inputs, ids)
    for name, g, e in zip(("unet", "vae decoder", "text encoder"), got, expected):
        err = relative_frobenius_error(g, e)
        assert err < FP16_NETWORK_TOL, f"{name} fp16 on {backend_name_fp16}: relative error {err:.2e}"


# -- checkpoints -----------------------------------------------------------------------------------


def test_save_and_reload_identical(backend_name, configs, unet_inputs, tmp_path):
    be = make_backend(backend_name)
    unet_config, vae_config, text_config = configs
    sample, t, context = unet_inputs
    for cls, config, call in [(UNet2DConditionModel, unet_config, lambda m: m(sample, t, context)),
                              (VAEDecoder, vae_config, lambda m: m(sample)),
                              (TextEncoder, text_config, lambda m: m(np.arange(30).reshape(2, 15)))]:
        model = cls.random(config, 7, backend=be)
        folder = model.save_pretrained(tmp_path / cls.__name__)
        loaded = cls.from_pretrained(folder, backend=be)
        assert loaded.config == model.config
        np.testing.assert_array_equal(be.to_numpy(call(loaded)), be.to_numpy(call(model)))


def _saved_unet(tmp_path, config, backend):
    from safetensors.numpy import load_file, save_file

    folder = UNet2DConditionModel.random(config, 0, backend=backend).save_pretrained(tmp_path / "unet")
    path = folder / UNet2DConditionModel.WEIGHTS_NAME
    return folder, path, load_file(str(path)), save_file


def test_missing_tensor_names_file_and_tensor(tmp_path, tiny_unet_config, numpy_backend):
    folder, path, tensors, save_file = _saved_unet(tmp_path, tiny_unet_config, numpy_backend)
    del tensors["mid_block.attentions.0.proj_out.bias"]
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model.safetensors: missing tensor "
                                              r"'mid_block.attentions.0.proj_out.bias'"):
        UNet2DConditionModel.from_pretrained(folder, backend=numpy_backend)


def test_mismatched_tensor_names_file_and_tensor(tmp_path, tiny_unet_config, numpy_backend):
    folder, path, tensors, save_file = _saved_unet(tmp_path, tiny_unet_config, numpy_backend)
    tensors["conv_in.weight"] = tensors["conv_in.weight"][:16]
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match=r"safetensors: tensor 'conv_in.weight' has shape \(16, 4, 3, 3\)"):
        UNet2DConditionModel.from_pretrained(folder, backend=numpy_backend)


def test_unexpected_tensor_and_config_mismatch(tmp_path, tiny_unet_config, numpy_backend):
    folder, path, tensors, save_file = _saved_unet(tmp_path, tiny_unet_config, numpy_backend)
    tensors["add_embedding.linear_1.weight"] = np.ones((2, 2), np.float32)
    save_file(tensors, str(path))
    with pytest.raises(CheckpointError, match="unexpected tensor 'add_embedding.linear_1.weight'"):
        UNet2DConditionModel.from_pretrained(folder, backend=numpy_backend)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "layers_per_block": 2}))
    with pytest.raises(CheckpointError, match="missing tensor"):
        UNet2DConditionModel.from_pretrained(folder, backend=numpy_backend)


def test_missing_files(tmp_path, tiny_vae_config, numpy_backend):
    with pytest.raises(FileNotFoundError, match="config.json: no such file"):
        VAEDecoder.from_pretrained(tmp_path, backend=numpy_backend)
    folder = VAEDecoder.random(tiny_vae_config, backend=numpy_backend).save_pretrained(tmp_path / "vae")
    (folder / VAEDecoder.WEIGHTS_NAME).rename(folder / "diffusion_pytorch_model.fp16.safetensors")
    with pytest.raises(FileNotFoundError, match=r"no such weights file; the folder has "
                                                r"diffusion_pytorch_model.fp16.safetensors \(choose it with variant=\)"):
        VAEDecoder.from_pretrained(folder, backend=numpy_backend)
    fp16 = VAEDecoder.from_pretrained(folder, backend=numpy_backend, variant="fp16")
    assert fp16.config["block_out_channels"] == [16, 32]


def test_vae_reads_legacy_attention_names_and_skips_the_encoder(tmp_path, tiny_vae_config, numpy_backend):
    """Older AutoencoderKL files name the attention query/key/value/proj_attn (as 1x1 convs in
    some) and every AutoencoderKL file holds the encoder, which the decoder does not use."""
    from safetensors.numpy import load_file, save_file

    model = VAEDecoder.random(tiny_vae_config, 1, backend=numpy_backend)
    folder = model.save_pretrained(tmp_path / "vae")
    path = folder / VAEDecoder.WEIGHTS_NAME
    tensors = load_file(str(path))
    legacy = {}
    for name, value in tensors.items():
        for new, old in (("to_q", "query"), ("to_k", "key"), ("to_v", "value"), ("to_out.0", "proj_attn")):
            if f".{new}." in name:
                name = name.replace(f".{new}.", f".{old}.")
                value = value[:, :, None, None] if value.ndim == 2 else value
        legacy[name] = value
    legacy["encoder.conv_in.weight"] = np.ones((16, 3, 3, 3), np.float32)
    legacy["quant_conv.weight"] = np.ones((8, 8, 1, 1), np.float32)
    save_file(legacy, str(path))
    z = np.random.default_rng(0).standard_normal((1, 4, 4, 4)).astype(np.float32)
    np.testing.assert_array_equal(VAEDecoder.from_pretrained(folder, backend=numpy_backend)(z), model(z))


def test_bad_inputs(tiny_unet_config, tiny_text_config, tiny_vae_config, numpy_backend):
    unet = UNet2DConditionModel.random(tiny_unet_config, backend=numpy_backend)
    context = np.zeros((1, 77, 32), np.float32) + 0.5
    with pytest.raises(ValueError, match=r"sample: expected \(B, 4, H, W\) with H, W divisible by 2"):
        unet(np.ones((1, 4, 7, 8), np.float32), 1, context)
    with pytest.raises(ValueError, match=r"encoder_hidden_states: expected \(1, tokens, 32\)"):
        unet(np.ones((1, 4, 8, 8), np.float32), 1, context[..., :16])
    with pytest.raises(ValueError, match="up_block_types: 'UpBlock3D' is not an SD 1.x block"):
        UNet2DConditionModel.random({**tiny_unet_config, "up_block_types": ["UpBlock3D", "CrossAttnUpBlock2D"]},
                                    backend=numpy_backend)
    with pytest.raises(ValueError, match="resnet_time_scale_shift: only 'default'"):
        UNet2DConditionModel.random({**tiny_unet_config, "resnet_time_scale_shift": "scale_shift"},
                                    backend=numpy_backend)
    text = TextEncoder.random(tiny_text_config, backend=numpy_backend)
    with pytest.raises(ValueError, match=r"input_ids: token ids must lie in \[0, 120\)"):
        text(np.array([[1, 200]]))
    with pytest.raises(ValueError, match="input_ids: at most 77 tokens"):
        text(np.ones((1, 78), np.int64))
    with pytest.raises(ValueError, match=r"dtype: expected one of \['bfloat16', 'float16', 'float32', 'float64'\], got 'int8'"):
        TextEncoder.random(tiny_text_config, backend=numpy_backend, dtype="int8")
    # the optimizations belong to the backend's constructor, not beside the backend object
    with pytest.raises(TypeError, match="unexpected keyword argument 'optimizations'"):
        StableDiffusionPipeline.random(backend=numpy_backend, optimizations=Optimizations.paper())
    with pytest.raises(ValueError, match=r"z: expected \(B, 4, h, w\)"):
        VAEDecoder.random(tiny_vae_config, backend=numpy_backend)(np.ones((1, 3, 4, 4), np.float32))


@pytest.mark.parametrize("cls", [UNet2DConditionModel, VAEDecoder, TextEncoder])
def test_models_refuse_a_backend_name(cls, tiny_unet_config, tiny_vae_config, tiny_text_config, tmp_path,
                                      numpy_backend):
    """A model runs on a backend object; a name (or anything without the op interface) is refused
    by every constructor with an error that says what to pass."""
    config = {UNet2DConditionModel: tiny_unet_config, VAEDecoder: tiny_vae_config, TextEncoder: tiny_text_config}[cls]
    name_refused = (r"backend: expected a backend object such as backends.get_backend\('opencl'\), "
                    r"got the string 'opencl'")
    with pytest.raises(TypeError, match=name_refused):
        cls.random(config, backend="opencl")
    folder = cls.random(config, backend=numpy_backend).save_pretrained(tmp_path / cls.__name__)
    with pytest.raises(TypeError, match=name_refused):
        cls.from_pretrained(folder, backend="opencl")
    with pytest.raises(TypeError, match=name_refused):
        cls(config, {}, backend="opencl")
    with pytest.raises(TypeError, match=r"backend: expected a backend object .*, got NoneType \(it has no asarray, "
                                        r"to_numpy, compile\)"):
        cls.random(config, backend=None)
