"""Our tensor names and layouts <-> GGUF's (llama.cpp's), for llama, qwen3, qwen3moe and gpt2. The only file
that knows them.

    gguf = to_gguf_tensors(state, config, arch)       # {"token_embd.weight": ndarray, "blk.0.attn_q.weight": ...}
    state = from_gguf_tensors(gguf, config, arch)     # our state dict again (exactly)

Arrays keep PyTorch's [out, in] order: GGUF's `ne` is the numpy shape reversed, which is what llama.cpp's
loader expects of a Linear weight. Three layout facts (llama.cpp's convert_hf_to_gguf.py):
- llama applies RoPE to adjacent pairs (ROPE_TYPE_NORM) where we rotate halves, so its q/k rows are
  permuted per head (`_permute`); qwen3 / qwen3moe rotate halves (NEOX) and need no permutation.
- gpt2 keeps q, k, v fused as `attn_qkv` and always writes `output.weight` (older llama.cpp requires it).
- experts are one [n_experts, out, in] array per projection (`ffn_{gate,up,down}_exps`), as ours are.
Llama 3.1's RoPE scaling travels as `rope_freqs.weight`: llama.cpp divides each base frequency by it, so it is
the base frequencies over the scaled ones (positions.py computes both).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from slmkit.errors import CheckpointError
from slmkit.model.config import ModelConfig
from slmkit.model.positions import rope_inverse_frequencies

TOP_LEVEL = {"embed": "token_embd", "pos_embed": "position_embd", "final_norm": "output_norm", "head": "output"}
IN_BLOCK = {
    "attn_norm": "attn_norm", "mlp_norm": "ffn_norm",
    "attn.q_proj": "attn_q", "attn.k_proj": "attn_k", "attn.v_proj": "attn_v", "attn.out_proj": "attn_output",
    "attn.q_norm": "attn_q_norm", "attn.k_norm": "attn_k_norm",
    "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
    "mlp.router": "ffn_gate_inp",
    "mlp.experts.gate_proj": "ffn_gate_exps", "mlp.experts.up_proj": "ffn_up_exps",
    "mlp.experts.down_proj": "ffn_down_exps",
}
_FROM_BLOCK = {v: k for k, v in IN_BLOCK.items()}
_FROM_TOP = {v: k for k, v in TOP_LEVEL.items()}
QKV = ("q_proj", "k_proj", "v_proj")


def gguf_name(ours: str) -> str:
    """'blocks.3.attn.q_proj.weight' -> 'blk.3.attn_q.weight'; experts ('blocks.0.mlp.experts.up_proj',
    no suffix in our state) get '.weight'."""
    if ours.startswith("blocks."):
        _, layer, rest = ours.split(".", 2)
        stem, suffix = (rest, "weight") if rest.startswith("mlp.experts.") else rest.rsplit(".", 1)
        if stem not in IN_BLOCK:
            raise CheckpointError(f"no GGUF name for tensor '{ours}'")
        return f"blk.{layer}.{IN_BLOCK[stem]}.{suffix}"
    stem, suffix = ours.rsplit(".", 1)
    if stem not in TOP_LEVEL:
        raise CheckpointError(f"no GGUF name for tensor '{ours}'")
    return f"{TOP_LEVEL[stem]}.{suffix}"


def our_name(name: str) -> str:
    """The inverse of gguf_name."""
    if name.startswith("blk."):
        _, layer, stem, suffix = name.split(".")
        if stem not in _FROM_BLOCK:
            raise CheckpointError(f"GGUF tensor '{name}' has no slmkit equivalent")
        ours = _FROM_BLOCK[stem]
        return f"blocks.{layer}.{ours}" + ("" if ours.startswith("mlp.experts.") else f".{suffix}")
    stem, suffix = name.split(".", 1)
    if stem not in _FROM_TOP:
        raise CheckpointError(f"GGUF tensor '{name}' has no slmkit equivalent")
    return f"{_FROM_TOP[stem]}.{suffix}"


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Rows of each head from halves order (ours, HF) to llama.cpp's adjacent pairs (convert's permute)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy()


def to_gguf_tensors(state: dict[str, torch.Tensor], config: ModelConfig, arch: str) -> dict[str, np.ndarray]:
    """GGUF-named float32 arrays from our state dict (a tied head is omitted, except for gpt2)."""
    state = {k: v for k, v in state.items() if not (k == "head.weight" and config.tie_embeddings)}
    out: dict[str, np.ndarray] = {}
    for ours, tensor in state.items():
        if arch == "gpt2" and any(f"attn.{p}." in ours for p in QKV):
            continue  # fused below
        array = _numpy(tensor)
        if arch == "llama" and (".attn.q_proj." in ours or ".attn.k_proj." in ours):
            array = _permute(array, config.n_heads if ".q_proj." in ours else config.n_kv_heads)
        out[gguf_name(ours)] = array
    if config.rope_scaling == "llama3":
        out["rope_freqs.weight"] = rope_freqs(config)
    if arch == "gpt2":
        for i in range(config.n_layers):
            for kind in ("weight", "bias"):
                out[f"blk.{i}.attn_qkv.{kind}"] = np.concatenate(
                    [_numpy(state[f"blocks.{i}.attn.{p}.{kind}"]) for p in QKV])
        out["output.weight"] = out["token_embd.weight"]
    return out


def from_gguf_tensors(tensors: dict[str, np.ndarray], config: ModelConfig, arch: str) -> dict[str, torch.Tensor]:
    """Our state dict from GGUF-named float32 arrays (the inverse of to_gguf_tensors)."""
    state: dict[str, torch.Tensor] = {}
    for name, array in tensors.items():
        if name == "rope_freqs.weight":
            _check_rope_freqs(array, config)
            continue
        if name == "output.weight" and config.tie_embeddings:
            continue
        if ".attn_qkv." in name:
            layer, kind = name.split(".")[1], name.rsplit(".", 1)[1]
            for p, part in zip(QKV, np.split(array, 3)):
                state[f"blocks.{layer}.attn.{p}.{kind}"] = torch.from_numpy(np.array(part, dtype=np.float32))
            continue
        if arch == "llama" and (".attn_q." in name or ".attn_k." in name):
            array = _unpermute(array, config.n_heads if ".attn_q." in name else config.n_kv_heads)
        state[our_name(name)] = torch.from_numpy(np.array(array, dtype=np.float32))
    return state


def rope_freqs(config: ModelConfig) -> np.ndarray:
    """llama.cpp's per-frequency divisors for the config's RoPE scaling: base frequencies / scaled ones."""
    base, _ = rope_inverse_frequencies(dataclasses.replace(config, rope_scaling="none"))
    return _numpy(base / rope_inverse_frequencies(config)[0])


# Llama 3.1 / 3.2 / 3.3's published rule: what a converter's rope_freqs tensor is matched against when the
# file lacks slmkit's keys (the divisors alone do not pin the rule's four numbers down).
LLAMA3_RELEASE_ROPE = dict(rope_original_max_seq_len=8192, rope_low_freq_factor=1.0, rope_high_freq_factor=4.0)


def llama3_scaling_from_rope_freqs(array: np.ndarray, config: ModelConfig) -> ModelConfig:
    """`config` with the llama3 scaling a foreign file's rope_freqs tensor encodes, when it is the Llama 3
    releases' rule with some factor (the largest divisor); CheckpointError otherwise."""
    candidate = dataclasses.replace(config, rope_scaling="llama3", rope_scaling_factor=float(array.max()),
                                    **LLAMA3_RELEASE_ROPE)
    if array.shape != rope_freqs(candidate).shape or not np.allclose(array, rope_freqs(candidate), rtol=1e-4):
        raise CheckpointError("the GGUF file's rope_freqs tensor is not Llama 3's RoPE rule (factor "
                              f"{float(array.max()):g}, original context 8192, low/high 1/4); slmkit cannot rebuild it")
    return candidate


def _check_rope_freqs(array: np.ndarray, config: ModelConfig) -> None:
    """A rope_freqs tensor must be what the config's llama3 scaling gives."""
    if config.rope_scaling != "llama3":
        raise CheckpointError("the GGUF file scales RoPE with a rope_freqs tensor that its keys do not describe")
    if not np.allclose(array, rope_freqs(config), rtol=1e-5):
        raise CheckpointError("the GGUF file's rope_freqs tensor does not match its slmkit.rope.llama3 keys")
