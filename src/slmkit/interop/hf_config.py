"""Hugging Face `config.json` <-> `ModelConfig`, for the four supported architectures.

Only plain JSON is read and written here, so importing works without `transformers` installed.
Anything these architectures can express that our decoder cannot (sliding windows, dynamic NTK, ...)
raises CheckpointError naming the HF field, rather than loading a silently different model.
"""

from __future__ import annotations

from typing import Any

from slmkit.errors import CheckpointError
from slmkit.model.config import ModelConfig

LLAMA = "LlamaForCausalLM"
QWEN3 = "Qwen3ForCausalLM"
QWEN3_MOE = "Qwen3MoeForCausalLM"
GPT2 = "GPT2LMHeadModel"
ARCHITECTURES = (LLAMA, QWEN3, QWEN3_MOE, GPT2)
MODEL_TYPES = {LLAMA: "llama", QWEN3: "qwen3", QWEN3_MOE: "qwen3_moe", GPT2: "gpt2"}
_BY_MODEL_TYPE = {v: k for k, v in MODEL_TYPES.items()}


def hf_architecture(hf: dict[str, Any]) -> str:
    """Which supported architecture an HF config.json describes (by `architectures`, else `model_type`)."""
    for name in hf.get("architectures") or []:
        if name in ARCHITECTURES:
            return name
    if hf.get("model_type") in _BY_MODEL_TYPE:
        return _BY_MODEL_TYPE[hf["model_type"]]
    found = hf.get("architectures") or hf.get("model_type") or "nothing"
    raise CheckpointError(f"unsupported Hugging Face architecture {found}; slmkit imports {', '.join(ARCHITECTURES)}")


def config_from_hf(hf: dict[str, Any]) -> ModelConfig:
    """Translate an HF config.json dict into our ModelConfig."""
    arch = hf_architecture(hf)
    try:
        fields = _gpt2_fields(hf) if arch == GPT2 else _rope_family_fields(hf, arch)
        return ModelConfig(**fields)
    except ValueError as e:
        raise CheckpointError(f"Hugging Face {arch} config cannot be represented: {e}") from None


def _gpt2_fields(hf: dict[str, Any]) -> dict[str, Any]:
    act = hf.get("activation_function", "gelu_new")
    if act not in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        raise CheckpointError(f"GPT-2 activation_function {act!r} is not supported (only tanh-approximated GELU)")
    for flag, ok in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                     ("add_cross_attention", False)):
        if hf.get(flag, ok) != ok:
            raise CheckpointError(f"GPT-2 config has {flag}={hf[flag]}, which slmkit does not support")
    d = hf.get("n_embd", 768)
    return dict(
        vocab_size=hf.get("vocab_size", 50257), d_model=d, n_layers=hf.get("n_layer", 12),
        n_heads=hf.get("n_head", 12), d_ff=hf.get("n_inner") or 4 * d, max_seq_len=hf.get("n_positions", 1024),
        norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5), mlp="gelu", positions="learned",
        tie_embeddings=True, attn_qkv_bias=True, attn_out_bias=True, mlp_bias=True,
        init_std=hf.get("initializer_range", 0.02),
    )


def _rope_family_fields(hf: dict[str, Any], arch: str) -> dict[str, Any]:
    if hf.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"hidden_act {hf['hidden_act']!r} is not supported (SwiGLU needs silu)")
    if hf.get("use_sliding_window"):
        raise CheckpointError("use_sliding_window=true is not supported (slmkit attends over the full context)")
    if hf.get("partial_rotary_factor", 1.0) != 1.0:
        raise CheckpointError("partial_rotary_factor != 1 is not supported")
    d = hf["hidden_size"]
    n_heads = hf["num_attention_heads"]
    default_head_dim = 128 if arch == QWEN3 else d // n_heads
    max_seq_len = hf.get("max_position_embeddings", 2048 if arch == LLAMA else 32768)
    bias = bool(hf.get("attention_bias", False))
    fields: dict[str, Any] = dict(
        vocab_size=hf["vocab_size"], d_model=d, n_layers=hf["num_hidden_layers"], n_heads=n_heads,
        n_kv_heads=hf.get("num_key_value_heads") or n_heads, head_dim=hf.get("head_dim") or default_head_dim,
        d_ff=hf["intermediate_size"], max_seq_len=max_seq_len, norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6),
        mlp="swiglu", positions="rope", qk_norm=arch in (QWEN3, QWEN3_MOE),
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)), attn_qkv_bias=bias, attn_out_bias=bias,
        mlp_bias=bool(hf.get("mlp_bias", False)), init_std=hf.get("initializer_range", 0.02),
    )
    fields.update(_rope_fields(hf, max_seq_len))
    if arch == QWEN3_MOE:
        if hf.get("decoder_sparse_step", 1) != 1 or hf.get("mlp_only_layers"):
            raise CheckpointError("Qwen3-MoE configs with dense layers (decoder_sparse_step != 1 or mlp_only_layers) "
                                  "are not supported")
        fields.update(
            n_experts=hf.get("num_experts", hf.get("num_local_experts", 128)),
            moe_top_k=hf.get("num_experts_per_tok", 8), moe_d_ff=hf.get("moe_intermediate_size", 768),
            moe_norm_topk_prob=bool(hf.get("norm_topk_prob", False)),
            moe_aux_loss_coef=hf.get("router_aux_loss_coef", 0.001),
        )
    return fields


def _rope_fields(hf: dict[str, Any], max_seq_len: int) -> dict[str, Any]:
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    kind = params.get("rope_type", params.get("type", "default"))
    original = params.get("original_max_position_embeddings", hf.get("original_max_position_embeddings"))
    fields: dict[str, Any] = dict(rope_theta=float(theta))
    if kind == "default":
        return fields
    factor = float(params.get("factor", 1.0))
    if kind == "linear":
        return {**fields, "rope_scaling": "linear", "rope_scaling_factor": factor}
    if kind == "yarn":
        for unsupported in ("attention_factor", "mscale", "mscale_all_dim"):
            if params.get(unsupported) is not None:
                raise CheckpointError(f"rope_parameters.{unsupported} is not supported for yarn")
        if params.get("truncate", True) is False:
            raise CheckpointError("rope_parameters.truncate=false is not supported for yarn")
        return {**fields, "rope_scaling": "yarn", "rope_scaling_factor": factor,
                "rope_original_max_seq_len": original or max_seq_len,
                "rope_yarn_beta_fast": float(params.get("beta_fast") or 32),
                "rope_yarn_beta_slow": float(params.get("beta_slow") or 1)}
    if kind == "llama3":
        return {**fields, "rope_scaling": "llama3", "rope_scaling_factor": factor,
                "rope_original_max_seq_len": original or max_seq_len,
                "rope_low_freq_factor": float(params["low_freq_factor"]),
                "rope_high_freq_factor": float(params["high_freq_factor"])}
    raise CheckpointError(f"rope type {kind!r} is not supported (slmkit has none, linear, yarn, llama3 for HF models)")


def export_architecture(config: ModelConfig) -> str:
    """The HF architecture that represents `config` exactly, or CheckpointError naming the field in the way."""
    c = config
    if c.positions == "learned":
        wanted = dict(norm="layernorm", mlp="gelu", logit_softcap=None, tie_embeddings=True, attn_qkv_bias=True,
                      attn_out_bias=True, mlp_bias=True, qk_norm=False, n_experts=0, n_kv_heads=c.n_heads,
                      head_dim=c.d_model // c.n_heads)
        _require(c, GPT2, wanted)
        return GPT2
    if c.positions != "rope":
        raise CheckpointError(f"positions={c.positions!r} has no Hugging Face equivalent among {', '.join(ARCHITECTURES)}")
    if c.rope_scaling == "ntk":
        raise CheckpointError("rope_scaling='ntk' (static NTK) has no Hugging Face equivalent; use yarn or linear")
    common = dict(norm="rmsnorm", mlp="swiglu", logit_softcap=None)
    if c.is_moe:
        _require(c, QWEN3_MOE, dict(common, qk_norm=True, n_shared_experts=0, mlp_bias=False,
                                    attn_out_bias=c.attn_qkv_bias))
        return QWEN3_MOE
    if c.qk_norm:
        _require(c, QWEN3, dict(common, mlp_bias=False, attn_out_bias=c.attn_qkv_bias))
        return QWEN3
    _require(c, LLAMA, dict(common, attn_out_bias=c.attn_qkv_bias))
    return LLAMA


def _require(config: ModelConfig, arch: str, wanted: dict[str, Any]) -> None:
    for name, value in wanted.items():
        if getattr(config, name) != value:
            raise CheckpointError(f"cannot export as {arch}: it needs {name}={value!r}, this model has "
                                  f"{name}={getattr(config, name)!r}")


def config_to_hf(config: ModelConfig, arch: str) -> dict[str, Any]:
    """The HF config.json dict for `config` as architecture `arch` (see export_architecture)."""
    c = config
    if arch == GPT2:
        return dict(architectures=[GPT2], model_type="gpt2", vocab_size=c.vocab_size, n_embd=c.d_model,
                    n_layer=c.n_layers, n_head=c.n_heads, n_inner=c.d_ff, n_positions=c.max_seq_len,
                    n_ctx=c.max_seq_len, activation_function="gelu_new", layer_norm_epsilon=c.norm_eps,
                    resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.dropout,
                    initializer_range=c.init_std, tie_word_embeddings=True, torch_dtype="float32")
    hf: dict[str, Any] = dict(
        architectures=[arch], model_type=_model_type(arch), vocab_size=c.vocab_size, hidden_size=c.d_model,
        num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.n_kv_heads,
        head_dim=c.head_dim, intermediate_size=c.d_ff, max_position_embeddings=c.max_seq_len, hidden_act="silu",
        rms_norm_eps=c.norm_eps, tie_word_embeddings=c.tie_embeddings, attention_bias=c.attn_qkv_bias,
        attention_dropout=c.dropout, initializer_range=c.init_std, rope_theta=c.rope_theta,
        rope_scaling=_rope_scaling_to_hf(c), torch_dtype="float32",
    )
    if arch == LLAMA:
        hf["mlp_bias"] = c.mlp_bias
    if arch in (QWEN3, QWEN3_MOE):
        hf.update(use_sliding_window=False, sliding_window=None)
    if arch == QWEN3_MOE:
        hf.update(num_experts=c.n_experts, num_experts_per_tok=c.moe_top_k, moe_intermediate_size=c.moe_d_ff,
                  norm_topk_prob=c.moe_norm_topk_prob, router_aux_loss_coef=c.moe_aux_loss_coef,
                  decoder_sparse_step=1, mlp_only_layers=[])
    return hf


def _model_type(arch: str) -> str:
    return MODEL_TYPES[arch]


def _rope_scaling_to_hf(c: ModelConfig) -> dict[str, Any] | None:
    # Written in the `rope_scaling` + `rope_theta` form, which transformers 4.x and 5.x both read.
    if c.rope_scaling == "none":
        return None
    out: dict[str, Any] = {"rope_type": c.rope_scaling, "factor": c.rope_scaling_factor}
    if c.rope_scaling in ("yarn", "llama3"):
        out["original_max_position_embeddings"] = c.rope_original_max_seq_len or c.max_seq_len
    if c.rope_scaling == "yarn":
        out.update(beta_fast=c.rope_yarn_beta_fast, beta_slow=c.rope_yarn_beta_slow)
    if c.rope_scaling == "llama3":
        out.update(low_freq_factor=c.rope_low_freq_factor, high_freq_factor=c.rope_high_freq_factor)
    return out
