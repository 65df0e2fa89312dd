"""Checkpoints as users have them: every damaged file and wrong config value refused by name, the
published SD 1.x configs accepted, and loading within 1.3x the file's size of host memory.

``read_safetensors`` reads the tensors itself (one at a time, into their arrays), so its errors are
tested file by file: truncated, not safetensors at all, empty, a non-float tensor, NaN, Inf, a value
that overflows float16 storage, a header that lies about a tensor's size. Each message names the
file and the tensor. ``check_config`` is tested through the three models: a value of the wrong type
or range, another architecture's key, an unknown key (with the closest known one), and the
informational keys transformers and diffusers write.
"""

import json
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from safetensors.numpy import save_file

from reference.sd import CheckpointError, TextEncoder, UNet2DConditionModel, VAEDecoder
from reference.sd.checkpoint import read_safetensors
from reference.sd.text_encoder import SD14_TEXT_ENCODER
from reference.sd.unet import SD14_UNET
from reference.sd.vae import SD14_VAE

# -------------------------------------------------------------------------------- the file


def write(path, tensors):
    save_file(tensors, str(path))
    return path


def test_reads_every_float_dtype_into_the_storage_dtype(tmp_path):
    values = np.arange(12, dtype=np.float64).reshape(3, 4) / 7
    path = write(tmp_path / "w.safetensors", {"f64": values, "f32": values.astype(np.float32),
                                              "f16": values.astype(np.float16),
                                              "bf16": values.astype(ml_dtypes.bfloat16)})
    for dtype in (np.float32, np.float16):
        tensors = read_safetensors(path, dtype)
        assert sorted(tensors) == ["bf16", "f16", "f32", "f64"]
        for name, stored in (("f64", values), ("f32", values.astype(np.float32)),
                             ("f16", values.astype(np.float16)), ("bf16", values.astype(ml_dtypes.bfloat16))):
            assert tensors[name].dtype == dtype and tensors[name].shape == (3, 4)
            np.testing.assert_array_equal(tensors[name], stored.astype(dtype))


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[:-5], r"tensor 'b' lies past the end of the file .*truncated"),
    (lambda data: b"", r"not a safetensors file \(0 bytes, shorter than the 8-byte header size\)"),
    (lambda data: b"this is a text file, not a checkpoint" * 4, r"not a safetensors file \(its first 8 bytes"),
    (lambda data: (12).to_bytes(8, "little") + b"{not json!!}" + data[8:], r"not a safetensors file \(its header is not JSON"),
    (lambda data: data.replace(b'"shape":[2,3]', b'"shape":[3,3]'), r"tensor 'a' declares shape \(3, 3\) of F32 but holds 24 bytes"),
])
def test_a_damaged_file_is_named_with_what_is_wrong(tmp_path, damage, message):
    good = write(tmp_path / "good.safetensors", {"a": np.ones((2, 3), np.float32), "b": np.ones(4, np.float32)})
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(damage(good.read_bytes()))
    with pytest.raises(CheckpointError, match=f"{bad}: {message}"):
        read_safetensors(bad, np.float32)


@pytest.mark.parametrize("tensor, dtype, message", [
    (np.arange(3, dtype=np.int32), np.float32, r"tensor 'w' is I32, expected a floating-point tensor"),
    (np.array([1.0, np.nan, 2.0], np.float32), np.float32, r"tensor 'w' holds 1 NaN or infinite values"),
    (np.array([np.inf, -np.inf], np.float16), np.float32, r"tensor 'w' holds 2 NaN or infinite values"),
    (np.array([1.0, 7e4], np.float32), np.float16, r"tensor 'w' overflows float16 \(its largest magnitude is 7e\+04\)"),
])
def test_a_tensor_that_is_not_finite_float_storage_is_named(tmp_path, tensor, dtype, message):
    path = write(tmp_path / "model.safetensors", {"ok": np.ones(2, np.float32), "w": tensor})
    with pytest.raises(CheckpointError, match=f"{path}: {message}"):
        read_safetensors(path, dtype)


def test_from_pretrained_names_the_damaged_weights_file(tmp_path, tiny_vae_config, numpy_backend):
    folder = VAEDecoder.random(tiny_vae_config, backend=numpy_backend).save_pretrained(tmp_path / "vae")
    weights = folder / VAEDecoder.WEIGHTS_NAME
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=rf"{weights}: tensor .* lies past the end of the file"):
        VAEDecoder.from_pretrained(folder, backend=numpy_backend)
    (folder / "config.json").write_text("{broken")
    with pytest.raises(CheckpointError, match=r"config.json: not valid JSON"):
        VAEDecoder.from_pretrained(folder, backend=numpy_backend)


def test_text_encoder_reads_both_layouts_and_refuses_a_mix(tmp_path, tiny_text_config, numpy_backend):
    """The hub's "text_model.*" names and transformers 5's unprefixed ones load the same
    weights; a file with some of each is refused by file and tensor."""
    from safetensors.numpy import load_file

    model = TextEncoder.random(tiny_text_config, backend=numpy_backend)
    folder = model.save_pretrained(tmp_path / "text_encoder")
    weights = folder / TextEncoder.WEIGHTS_NAME
    hub = load_file(str(weights))
    assert all(name.startswith("text_model.") for name in hub)
    ids = np.arange(20).reshape(2, 10)
    unprefixed = {name.removeprefix("text_model."): value for name, value in hub.items()}
    write(weights, unprefixed)
    np.testing.assert_array_equal(TextEncoder.from_pretrained(folder, backend=numpy_backend)(ids), model(ids))
    mixed = dict(unprefixed)
    mixed["text_model.final_layer_norm.bias"] = mixed.pop("final_layer_norm.bias")
    write(weights, mixed)
    with pytest.raises(CheckpointError, match=rf"^{weights}: tensor '[^']+' lacks the 'text_model.' prefix that "
                                              r"'text_model.final_layer_norm.bias' has"):
        TextEncoder.from_pretrained(folder, backend=numpy_backend)


MEMORY_CHECK = r"""
import resource, sys
import numpy as np
from reference.sd.checkpoint import read_safetensors
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tensors = read_safetensors(sys.argv[1], np.float32)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print((after - before) * 1024, sum(t.nbytes for t in tensors.values()))
"""


def test_loading_needs_at_most_1_3x_the_file_in_host_memory(tmp_path):
    # 64 tensors of 4 MiB: the peak resident growth while reading them, in a fresh process (Linux
    # ru_maxrss, KiB). A reader that maps the whole file (safetensors' own) counts the mapped pages
    # too and reaches about 2x.
    rng = np.random.default_rng(0)
    path = write(tmp_path / "big.safetensors",
                 {f"t{i}": rng.standard_normal(2**20, dtype=np.float32) for i in range(64)})
    size = path.stat().st_size
    done = subprocess.run([sys.executable, "-c", MEMORY_CHECK, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    grown, held = (int(v) for v in done.stdout.split())
    assert held == 64 * 4 * 2**20
    assert grown <= 1.3 * size, f"reading a {size / 2**20:.0f} MiB file grew the process by {grown / 2**20:.0f} MiB"


# -------------------------------------------------------------------------------- the config


def test_the_published_sd14_configs_are_accepted():
    for cls, config in ((UNet2DConditionModel, SD14_UNET), (VAEDecoder, SD14_VAE), (TextEncoder, SD14_TEXT_ENCODER)):
        assert cls.checked_config(config)["block_out_channels" if cls is not TextEncoder else "hidden_size"]


#: what current diffusers writes for an SD 1.x UNet beyond SD 1.4's 2022 config, at SD 1.x's values
DIFFUSERS_UNET_EXTRAS = {
    "_diffusers_version": "0.36.0", "addition_embed_type": None, "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": None, "attention_type": "default", "class_embed_type": None,
    "class_embeddings_concat": False, "conv_in_kernel": 3, "conv_out_kernel": 3, "cross_attention_norm": None,
    "dropout": 0.0, "dual_cross_attention": False, "encoder_hid_dim": None, "encoder_hid_dim_type": None,
    "mid_block_only_cross_attention": None, "mid_block_type": "UNetMidBlock2DCrossAttn", "num_attention_heads": None,
    "num_class_embeds": None, "only_cross_attention": False, "projection_class_embeddings_input_dim": None,
    "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False, "resnet_time_scale_shift": "default",
    "reverse_transformer_layers_per_block": None, "time_cond_proj_dim": None, "time_embedding_act_fn": None,
    "time_embedding_dim": None, "time_embedding_type": "positional", "timestep_post_act": None,
    "transformer_layers_per_block": 1, "upcast_attention": False, "use_linear_projection": False,
}
TRANSFORMERS_TEXT_EXTRAS = {
    "_name_or_path": "openai/clip-vit-large-patch14", "architectures": ["CLIPTextModel"], "attention_dropout": 0.0,
    "bos_token_id": 0, "dropout": 0.0, "eos_token_id": 2, "initializer_factor": 1.0, "initializer_range": 0.02,
    "model_type": "clip_text_model", "pad_token_id": 1, "projection_dim": 768, "torch_dtype": "float32",
    "transformers_version": "4.22.0.dev0",
}


def test_what_diffusers_and_transformers_write_beside_is_accepted():
    assert UNet2DConditionModel.checked_config({**SD14_UNET, **DIFFUSERS_UNET_EXTRAS})["conv_in_kernel"] == 3
    assert TextEncoder.checked_config({**SD14_TEXT_ENCODER, **TRANSFORMERS_TEXT_EXTRAS})["projection_dim"] == 768
    assert VAEDecoder.checked_config({**SD14_VAE, "force_upcast": True, "latents_mean": None, "shift_factor": None,
                                      "use_quant_conv": True, "_diffusers_version": "0.36.0"})["force_upcast"]


@pytest.mark.parametrize("cls, config, change, message", [
    (UNet2DConditionModel, SD14_UNET, {"norm_num_groups": "8"}, r"norm_num_groups: expected a positive int, got '8'"),
    (UNet2DConditionModel, SD14_UNET, {"norm_num_groups": True}, r"norm_num_groups: expected a positive int, got True"),
    (UNet2DConditionModel, SD14_UNET, {"norm_eps": -1e-5}, r"norm_eps: expected a positive finite number"),
    (UNet2DConditionModel, SD14_UNET, {"norm_eps": float("nan")}, r"norm_eps: expected a positive finite number"),
    (UNet2DConditionModel, SD14_UNET, {"block_out_channels": [320, "640"]},
     r"block_out_channels: expected a non-empty list, each a positive int"),
    (UNet2DConditionModel, SD14_UNET, {"attention_head_dim": [8, 0, 8, 8]}, r"attention_head_dim: expected a positive int"),
    (UNet2DConditionModel, SD14_UNET, {"flip_sin_to_cos": 1}, r"flip_sin_to_cos: expected true or false, got 1"),
    (UNet2DConditionModel, SD14_UNET, {"norm_epsilon": 1e-5},
     r"norm_epsilon: unknown config key .*; did you mean 'norm_eps'\?"),
    (UNet2DConditionModel, SD14_UNET, {"conv_in_kernel": 5}, r"conv_in_kernel: only 3 \(SD 1.x\) is implemented, got 5"),
    (UNet2DConditionModel, SD14_UNET, {"mid_block_scale_factor": True}, r"mid_block_scale_factor: only 1 \(SD 1.x\)"),
    (UNet2DConditionModel, SD14_UNET, {"class_embed_type": "timestep"}, r"class_embed_type: only None"),
    (VAEDecoder, SD14_VAE, {"scaling_factor": 0}, r"scaling_factor: expected a positive finite number, got 0"),
    (VAEDecoder, SD14_VAE, {"force_upcast": "yes"}, r"force_upcast: expected true or false, got 'yes'"),
    (VAEDecoder, SD14_VAE, {"latents_mean": [0.1] * 4}, r"latents_mean: only None \(SD 1.x\) is implemented"),
    (VAEDecoder, SD14_VAE, {"scale_factor": 0.18215}, r"scale_factor: unknown config key .*'scaling_factor'"),
    (TextEncoder, SD14_TEXT_ENCODER, {"hidden_size": 768.0}, r"hidden_size: expected a positive int, got 768.0"),
    (TextEncoder, SD14_TEXT_ENCODER, {"num_hidden_layer": 12}, r"num_hidden_layer: unknown config key .*'num_hidden_layers'"),
])
def test_a_config_value_the_network_cannot_honour_is_named(cls, config, change, message, tmp_path, numpy_backend):
    with pytest.raises(CheckpointError, match=message):
        cls.checked_config({**config, **change})
    # from a folder: refused before any weight is read (there is no weights file), naming the config
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CheckpointError, match=rf"{tmp_path / 'config.json'}: {message}"):
        cls.from_pretrained(tmp_path, backend=numpy_backend)
