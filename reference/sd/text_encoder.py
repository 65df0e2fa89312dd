"""The text encoder of Stable Diffusion 1.x: transformers' ``CLIPTextModel`` (CLIP ViT-L/14's
text transformer), on any backend. Its output is the last hidden state (after the final
LayerNorm), which the UNet's cross-attention reads.

    from backends import get_backend

    text_encoder = TextEncoder.from_pretrained("sd-v1-4/text_encoder", backend=get_backend("jax"))
    hidden = text_encoder(input_ids)          # (B, 77) int -> (B, 77, 768)

The network (SD 1.4: 12 layers, width 768, 12 heads of 64, MLP 3072, quick GELU):

    x = token_embedding[ids] + position_embedding[0..N-1]
    each layer:  x = x + out_proj(causal_attention(q_proj, k_proj, v_proj of LN1(x)))
                 x = x + fc2(act(fc1(LN2(x))))
    final_layer_norm(x)

The attention is causal (token i sees tokens 0..i). The embedding lookup is a gather of N rows
on the host (tiny next to the transformer); everything after it runs on the backend.
"""

from __future__ import annotations

import numpy as np

from .checkpoint import POSITIVE_INT, POSITIVE_NUMBER, STRING, CheckpointError, Model
from .layers import LayerNorm, Linear, Module, ModuleList, Run, merge_heads, split_heads

#: SD 1.4's text_encoder/config.json (openai/clip-vit-large-patch14's text tower), the keys read here.
SD14_TEXT_ENCODER = {
    "architectures": ["CLIPTextModel"],
    "hidden_act": "quick_gelu",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 77,
    "model_type": "clip_text_model",
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "vocab_size": 49408,
}

_ACTIVATIONS = ("quick_gelu", "gelu")


class CLIPAttention(Module):
    """Causal multi-head self-attention with biased q/k/v/out projections."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q_proj = self.add("q_proj", Linear(dim, dim))
        self.k_proj = self.add("k_proj", Linear(dim, dim))
        self.v_proj = self.add("v_proj", Linear(dim, dim))
        self.out_proj = self.add("out_proj", Linear(dim, dim))

    def __call__(self, run: Run, x):
        be = run.backend
        q = split_heads(be, self.q_proj(run, x), self.heads)
        k = split_heads(be, self.k_proj(run, x), self.heads)
        v = split_heads(be, self.v_proj(run, x), self.heads)
        return self.out_proj(run, merge_heads(be, be.attention(q, k, v, causal=True)))


class CLIPEncoderLayer(Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, eps: float, act: str):
        super().__init__()
        self.act = act
        self.layer_norm1 = self.add("layer_norm1", LayerNorm(dim, eps))
        self.self_attn = self.add("self_attn", CLIPAttention(dim, heads))
        self.layer_norm2 = self.add("layer_norm2", LayerNorm(dim, eps))
        mlp = self.add("mlp", Module())
        self.fc1 = mlp.add("fc1", Linear(dim, mlp_dim))
        self.fc2 = mlp.add("fc2", Linear(mlp_dim, dim))

    def __call__(self, run: Run, x):
        be = run.backend
        x = be.add(x, self.self_attn(run, self.layer_norm1(run, x)))
        h = self.fc1(run, self.layer_norm2(run, x))
        h = be.quick_gelu(h) if self.act == "quick_gelu" else be.gelu(h)
        return be.add(x, self.fc2(run, h))


class TextModule(Module):
    """``text_model.*`` (parameter names = transformers' checkpoint names)."""

    def __init__(self, config: dict):
        super().__init__()
        dim, heads = config["hidden_size"], config["num_attention_heads"]
        if dim % heads:
            raise ValueError(f"num_attention_heads: {heads} heads do not divide hidden_size {dim}")
        if config["hidden_act"] not in _ACTIVATIONS:
            raise ValueError(f"hidden_act: expected one of {_ACTIVATIONS}, got {config['hidden_act']!r}")
        self.max_positions = config["max_position_embeddings"]
        text_model = self.add("text_model", Module())
        embeddings = text_model.add("embeddings", Module())
        self.token_embedding = embeddings.add("token_embedding", Module())
        self.token_embedding.add_param("weight", (config["vocab_size"], dim))
        self.position_embedding = embeddings.add("position_embedding", Module())
        self.position_embedding.add_param("weight", (self.max_positions, dim))
        encoder = text_model.add("encoder", Module())
        self.layers = encoder.add("layers", ModuleList(
            [CLIPEncoderLayer(dim, heads, config["intermediate_size"], config["layer_norm_eps"], config["hidden_act"])
             for _ in range(config["num_hidden_layers"])]))
        self.final_layer_norm = text_model.add("final_layer_norm", LayerNorm(dim, config["layer_norm_eps"]))

    def __call__(self, run: Run, embeddings):
        x = embeddings
        for layer in self.layers:
            x = layer(run, x)
        return self.final_layer_norm(run, x)


class TextEncoder(Model):
    """``text_encoder(input_ids)`` -> last hidden state (B, N, hidden_size)."""

    WEIGHTS_NAME = "model.safetensors"
    IGNORED_PREFIXES = ("text_model.embeddings.position_ids",)  # a constant buffer in older files
    CONFIG_KEYS = {"hidden_act": STRING, "hidden_size": POSITIVE_INT, "intermediate_size": POSITIVE_INT,
                   "layer_norm_eps": POSITIVE_NUMBER, "max_position_embeddings": POSITIVE_INT,
                   "num_attention_heads": POSITIVE_INT, "num_hidden_layers": POSITIVE_INT, "vocab_size": POSITIVE_INT}
    #: what transformers writes beside them that CLIPTextModel's forward pass does not read: names
    #: and versions, token ids, dropout and initialization (training), the projection (of
    #: CLIPTextModelWithProjection), and PretrainedConfig's generic settings
    INFORMATIONAL_KEYS = frozenset({
        "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "attention_dropout",
        "dropout", "initializer_factor", "initializer_range", "bos_token_id", "eos_token_id", "pad_token_id",
        "projection_dim", "output_attentions", "output_hidden_states", "return_dict", "use_return_dict",
        "torchscript", "use_bfloat16", "tf_legacy_loss", "pruned_heads", "tie_word_embeddings",
        "chunk_size_feed_forward", "is_encoder_decoder", "is_decoder", "add_cross_attention",
        "cross_attention_hidden_size", "tie_encoder_decoder", "finetuning_task", "id2label", "label2id",
        "tokenizer_class", "prefix", "sep_token_id", "decoder_start_token_id", "task_specific_params",
        "problem_type", "max_length", "min_length", "do_sample", "early_stopping", "num_beams",
        "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p", "typical_p",
        "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
        "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate",
        "forced_bos_token_id", "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty",
        "suppress_tokens", "begin_suppress_tokens",
    })
    DEFAULTS = {"hidden_act": "quick_gelu", "hidden_size": 512, "intermediate_size": 2048, "layer_norm_eps": 1e-5,
                "max_position_embeddings": 77, "num_attention_heads": 8, "num_hidden_layers": 12,
                "vocab_size": 49408}
    #: the two embedding tables stay on the host, where the lookup happens
    HOST_PARAMETERS = ("text_model.embeddings.token_embedding.weight",
                       "text_model.embeddings.position_embedding.weight")

    @classmethod
    def build(cls, config: dict) -> Module:
        return TextModule(config)

    @classmethod
    def canonical_names(cls, params: dict) -> dict:
        """Both layouts users have: the hub's SD 1.x folders name every tensor ``text_model.*``
        (as transformers 4 saved ``CLIPTextModel``); transformers 5's ``save_pretrained`` drops
        that prefix. A file of the second layout gets the prefix; a file mixing both is refused."""
        prefixed = [name for name in params if name.startswith("text_model.")]
        if not prefixed:
            return {f"text_model.{name}": value for name, value in params.items()}
        if len(prefixed) != len(params):
            other = next(name for name in params if not name.startswith("text_model."))
            raise CheckpointError(f"tensor {other!r} lacks the 'text_model.' prefix that "
                                  f"{prefixed[0]!r} has; expected one layout for the whole file")
        return params

    def forward(self, run: Run, embeddings):
        return self.module(run, embeddings)

    def embed(self, input_ids) -> np.ndarray:
        """token_embedding[ids] + position_embedding[:N] on the host, in the model's dtype."""
        ids = np.asarray(input_ids)
        tokens, positions = (self.host_params[name] for name in self.HOST_PARAMETERS)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"input_ids: expected a (B, N) integer array, got {ids.dtype} of shape {ids.shape}")
        if ids.shape[1] > positions.shape[0]:
            raise ValueError(f"input_ids: at most {positions.shape[0]} tokens (max_position_embeddings), got {ids.shape[1]}")
        if ids.size and (ids.min() < 0 or ids.max() >= tokens.shape[0]):
            raise ValueError(f"input_ids: token ids must lie in [0, {tokens.shape[0]}), got {ids.min()}..{ids.max()}")
        x = tokens[ids].astype(np.float64) + positions[: ids.shape[1]].astype(np.float64)
        return x.astype(self.dtype)

    def __call__(self, input_ids):
        (embeddings,) = self.to_backend([self.embed(input_ids)])
        return self._forward(self.params, embeddings)
