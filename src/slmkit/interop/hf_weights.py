"""Weight names and layouts of Hugging Face checkpoints <-> ours. The only file that knows them.

Ours (see slmkit.model):  embed, pos_embed, blocks.{i}.attn_norm, blocks.{i}.attn.{q,k,v,out}_proj,
blocks.{i}.attn.{q,k}_norm, blocks.{i}.mlp_norm, blocks.{i}.mlp.{gate,up,down}_proj (dense),
blocks.{i}.mlp.router / mlp.experts.{gate,up,down}_proj [experts, out, in] (MoE), final_norm, head.
"""

from __future__ import annotations

import torch

from slmkit.errors import CheckpointError
from slmkit.interop.hf_config import GPT2, QWEN3_MOE
from slmkit.interop.safetensors_dir import TensorSource
from slmkit.model.config import ModelConfig

# Tensors that some HF checkpoints carry but that are derived, not learned (GPT-2's causal-mask buffers,
# old Llama rotary caches); skipped on import.
IGNORABLE = (".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq")


def import_weights(source: TensorSource, config: ModelConfig, arch: str) -> dict[str, torch.Tensor]:
    """Our state dict (tied head omitted) from an HF directory; every HF tensor must be used."""
    tensors = _import_gpt2(source, config) if arch == GPT2 else _import_rope_family(source, config, arch)
    ignorable = IGNORABLE + (("lm_head.weight",) if config.tie_embeddings else ())
    leftover = source.leftover(ignorable)
    if leftover:
        raise CheckpointError(f"{source.directory} has unexpected tensor '{leftover[0]}' "
                              f"(shape {list(source.take(leftover[0]).shape)}) that the {arch} config does not use"
                              + (f", and {len(leftover) - 1} more" if len(leftover) > 1 else ""))
    return tensors


def export_weights(state: dict[str, torch.Tensor], config: ModelConfig, arch: str) -> dict[str, torch.Tensor]:
    """HF-named tensors from our state dict (with or without the tied head)."""
    return _export_gpt2(state, config) if arch == GPT2 else _export_rope_family(state, config, arch)


# --- Llama / Qwen3 / Qwen3-MoE ---------------------------------------------------------------------------

def _rope_family_pairs(config: ModelConfig, arch: str) -> list[tuple[str, str]]:
    """(ours, hf) name pairs for every tensor that maps one-to-one."""
    pairs = [("embed.weight", "model.embed_tokens.weight"), ("final_norm.weight", "model.norm.weight")]
    if not config.tie_embeddings:
        pairs.append(("head.weight", "lm_head.weight"))
    for i in range(config.n_layers):
        ours, hf = f"blocks.{i}.", f"model.layers.{i}."
        pairs += [(ours + "attn_norm.weight", hf + "input_layernorm.weight"),
                  (ours + "mlp_norm.weight", hf + "post_attention_layernorm.weight")]
        for proj, hf_proj in (("q_proj", "q_proj"), ("k_proj", "k_proj"), ("v_proj", "v_proj"), ("out_proj", "o_proj")):
            pairs.append((f"{ours}attn.{proj}.weight", f"{hf}self_attn.{hf_proj}.weight"))
            has_bias = config.attn_out_bias if proj == "out_proj" else config.attn_qkv_bias
            if has_bias:
                pairs.append((f"{ours}attn.{proj}.bias", f"{hf}self_attn.{hf_proj}.bias"))
        if config.qk_norm:
            pairs += [(ours + "attn.q_norm.weight", hf + "self_attn.q_norm.weight"),
                      (ours + "attn.k_norm.weight", hf + "self_attn.k_norm.weight")]
        if arch == QWEN3_MOE:
            pairs.append((ours + "mlp.router.weight", hf + "mlp.gate.weight"))
        else:
            for proj in ("gate_proj", "up_proj", "down_proj"):
                pairs.append((f"{ours}mlp.{proj}.weight", f"{hf}mlp.{proj}.weight"))
                if config.mlp_bias:
                    pairs.append((f"{ours}mlp.{proj}.bias", f"{hf}mlp.{proj}.bias"))
    return pairs


def _import_rope_family(source: TensorSource, config: ModelConfig, arch: str) -> dict[str, torch.Tensor]:
    out = {ours: source.take(hf) for ours, hf in _rope_family_pairs(config, arch)}
    if arch == QWEN3_MOE:
        for i in range(config.n_layers):
            out.update(_import_experts(source, config, i))
    return out


def _import_experts(source: TensorSource, config: ModelConfig, layer: int) -> dict[str, torch.Tensor]:
    hf = f"model.layers.{layer}.mlp.experts."
    ours = f"blocks.{layer}.mlp.experts."
    if hf + "gate_up_proj" in source:  # transformers 5's fused in-memory layout, if saved that way
        gate_up = source.take(hf + "gate_up_proj")  # [experts, 2 * d_ff, d_model]
        gate, up = gate_up.chunk(2, dim=1)
        return {ours + "gate_proj": gate, ours + "up_proj": up, ours + "down_proj": source.take(hf + "down_proj")}
    # The on-disk layout of the Qwen3-MoE releases: one Linear per expert.
    return {ours + proj: torch.stack([source.take(f"{hf}{e}.{proj}.weight") for e in range(config.n_experts)])
            for proj in ("gate_proj", "up_proj", "down_proj")}


def _export_rope_family(state: dict[str, torch.Tensor], config: ModelConfig, arch: str) -> dict[str, torch.Tensor]:
    out = {hf: state[ours] for ours, hf in _rope_family_pairs(config, arch)}
    if arch == QWEN3_MOE:
        for i in range(config.n_layers):
            for proj in ("gate_proj", "up_proj", "down_proj"):
                stacked = state[f"blocks.{i}.mlp.experts.{proj}"]
                for e in range(config.n_experts):
                    out[f"model.layers.{i}.mlp.experts.{e}.{proj}.weight"] = stacked[e]
    return out


# --- GPT-2 ---------------------------------------------------------------------------------------------
# GPT-2 uses Conv1D, whose weight is [in, out] (the transpose of nn.Linear), and one fused c_attn for q, k, v.

def _gpt2_prefix(source: TensorSource) -> str:
    # The original openai-community/gpt2 files have no "transformer." prefix; save_pretrained adds it.
    return "transformer." if "transformer.wte.weight" in source else ""


def _import_gpt2(source: TensorSource, config: ModelConfig) -> dict[str, torch.Tensor]:
    p = _gpt2_prefix(source)
    out = {"embed.weight": source.take(p + "wte.weight"), "pos_embed.weight": source.take(p + "wpe.weight"),
           "final_norm.weight": source.take(p + "ln_f.weight"), "final_norm.bias": source.take(p + "ln_f.bias")}
    for i in range(config.n_layers):
        hf, ours = f"{p}h.{i}.", f"blocks.{i}."
        for norm, hf_norm in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
            out[f"{ours}{norm}.weight"] = source.take(f"{hf}{hf_norm}.weight")
            out[f"{ours}{norm}.bias"] = source.take(f"{hf}{hf_norm}.bias")
        qkv_w = source.take(hf + "attn.c_attn.weight").T  # [3 * d, d]
        qkv_b = source.take(hf + "attn.c_attn.bias")
        for proj, w, b in zip(("q_proj", "k_proj", "v_proj"), qkv_w.chunk(3, dim=0), qkv_b.chunk(3)):
            out[f"{ours}attn.{proj}.weight"], out[f"{ours}attn.{proj}.bias"] = w, b
        for ours_name, hf_name in (("attn.out_proj", "attn.c_proj"), ("mlp.up_proj", "mlp.c_fc"),
                                   ("mlp.down_proj", "mlp.c_proj")):
            out[f"{ours}{ours_name}.weight"] = source.take(f"{hf}{hf_name}.weight").T
            out[f"{ours}{ours_name}.bias"] = source.take(f"{hf}{hf_name}.bias")
    return out


def _export_gpt2(state: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    p = "transformer."
    out = {p + "wte.weight": state["embed.weight"], p + "wpe.weight": state["pos_embed.weight"],
           p + "ln_f.weight": state["final_norm.weight"], p + "ln_f.bias": state["final_norm.bias"]}
    for i in range(config.n_layers):
        hf, ours = f"{p}h.{i}.", f"blocks.{i}."
        for norm, hf_norm in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
            out[f"{hf}{hf_norm}.weight"] = state[f"{ours}{norm}.weight"]
            out[f"{hf}{hf_norm}.bias"] = state[f"{ours}{norm}.bias"]
        projs = ("q_proj", "k_proj", "v_proj")
        out[hf + "attn.c_attn.weight"] = torch.cat([state[f"{ours}attn.{n}.weight"] for n in projs]).T
        out[hf + "attn.c_attn.bias"] = torch.cat([state[f"{ours}attn.{n}.bias"] for n in projs])
        for ours_name, hf_name in (("attn.out_proj", "attn.c_proj"), ("mlp.up_proj", "mlp.c_fc"),
                                   ("mlp.down_proj", "mlp.c_proj")):
            out[f"{hf}{hf_name}.weight"] = state[f"{ours}{ours_name}.weight"].T
            out[f"{hf}{hf_name}.bias"] = state[f"{ours}{ours_name}.bias"]
    return out
