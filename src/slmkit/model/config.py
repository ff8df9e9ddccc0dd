"""`ModelConfig`: every shape and switch of the decoder in one dataclass.

One config describes GPT-2 (learned positions, LayerNorm, GELU, biases), Llama (RoPE, RMSNorm, SwiGLU),
Qwen3 (Llama + QK-norm + decoupled head_dim) and Qwen3-MoE (Qwen3 with routed experts). Invalid
combinations raise `ValueError` in `__post_init__`, naming the field, so a bad config fails before any
weight is allocated.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

NORMS = ("rmsnorm", "layernorm")
MLPS = ("swiglu", "gelu", "relu2")
POSITIONS = ("rope", "learned", "sinusoidal")
ROPE_SCALINGS = ("none", "linear", "ntk", "yarn", "llama3")


@dataclass
class ModelConfig:
    # --- sizes ---
    vocab_size: int = 4096
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int | None = None  # None -> n_heads (MHA); 1 -> MQA; in between -> GQA
    head_dim: int | None = None  # None -> d_model // n_heads; Qwen3 sets it independently
    d_ff: int = 768  # hidden width of the dense MLP
    max_seq_len: int = 1024  # longest context the model is built for (learned positions table size)

    # --- layer kinds ---
    norm: str = "rmsnorm"  # rmsnorm | layernorm
    norm_eps: float = 1e-6
    mlp: str = "swiglu"  # swiglu (gate*up, SiLU) | gelu (GPT-2's tanh-approximated GELU) | relu2 (ReLU squared)
    positions: str = "rope"  # rope | learned | sinusoidal
    rope_theta: float = 10000.0
    rope_scaling: str = "none"  # none | linear | ntk (static NTK-aware base) | yarn | llama3
    rope_scaling_factor: float = 1.0
    rope_original_max_seq_len: int | None = None  # yarn/llama3: pre-extension context (None -> max_seq_len)
    rope_yarn_beta_fast: float = 32.0
    rope_yarn_beta_slow: float = 1.0
    rope_low_freq_factor: float = 1.0  # llama3 scaling
    rope_high_freq_factor: float = 4.0  # llama3 scaling
    qk_norm: bool = False  # RMSNorm on each query/key head (Qwen3)
    tie_embeddings: bool = True  # output head shares the token embedding matrix
    logit_softcap: float | None = None  # logits = cap * tanh(logits / cap) (Gemma 2, modded-nanogpt); None: off

    # --- biases (GPT-2 has all three; Qwen2 only qkv; Llama/Qwen3 none) ---
    attn_qkv_bias: bool = False
    attn_out_bias: bool = False
    mlp_bias: bool = False

    # --- training-time behaviour ---
    dropout: float = 0.0  # embedding, attention-probability and residual dropout
    init_std: float = 0.02  # residual projections get init_std / sqrt(2 * n_layers) (GPT-2)
    zero_init_residual: bool = False  # attention and MLP output projections start at zero (modded-nanogpt)
    gradient_checkpointing: bool = False  # recompute each block in backward to save activation memory

    # --- mixture of experts (n_experts == 0 -> dense) ---
    n_experts: int = 0
    moe_top_k: int = 2
    n_shared_experts: int = 0  # always-on experts added to the routed output (DeepSeek-style)
    moe_norm_topk_prob: bool = True  # renormalise the top-k router probabilities to sum to 1
    moe_d_ff: int | None = None  # hidden width of each expert (None -> d_ff)
    moe_aux_loss_coef: float = 0.001  # load-balancing loss weight (Switch / HF Qwen3-MoE)
    moe_z_loss_coef: float = 0.0  # router z-loss weight (ST-MoE)

    def __post_init__(self) -> None:
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.head_dim is None:
            if self.n_heads > 0 and self.d_model % self.n_heads:
                raise ValueError(
                    f"d_model ({self.d_model}) is not divisible by n_heads ({self.n_heads}); "
                    "change one of them or set head_dim explicitly"
                )
            self.head_dim = self.d_model // max(self.n_heads, 1)
        if self.moe_d_ff is None:
            self.moe_d_ff = self.d_ff
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first field that is out of range or inconsistent."""
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff", "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads}) "
                "so each key/value head serves the same number of query heads"
            )
        _check_choice("norm", self.norm, NORMS)
        _check_choice("mlp", self.mlp, MLPS)
        _check_choice("positions", self.positions, POSITIONS)
        _check_choice("rope_scaling", self.rope_scaling, ROPE_SCALINGS)
        if self.positions == "rope" and self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rope positions, got {self.head_dim}")
        if self.positions == "sinusoidal" and self.d_model % 2:
            raise ValueError(f"d_model must be even for sinusoidal positions, got {self.d_model}")
        if self.rope_scaling != "none" and self.rope_scaling_factor < 1.0:
            raise ValueError(f"rope_scaling_factor must be >= 1 when rope_scaling is set, got {self.rope_scaling_factor}")
        if self.norm_eps <= 0:
            raise ValueError(f"norm_eps must be positive, got {self.norm_eps}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.logit_softcap is not None and not self.logit_softcap > 0:
            raise ValueError(f"logit_softcap must be positive (or null: off), got {self.logit_softcap}")
        if self.init_std <= 0:
            raise ValueError(f"init_std must be positive, got {self.init_std}")
        if self.n_experts < 0 or self.n_shared_experts < 0:
            raise ValueError("n_experts and n_shared_experts must be >= 0")
        if self.n_experts:
            if not 1 <= self.moe_top_k <= self.n_experts:
                raise ValueError(f"moe_top_k must be between 1 and n_experts ({self.n_experts}), got {self.moe_top_k}")
            if self.mlp != "swiglu":
                raise ValueError(f"mlp must be swiglu when n_experts > 0 (experts are SwiGLU), got {self.mlp!r}")
            if self.moe_d_ff <= 0:
                raise ValueError(f"moe_d_ff must be a positive integer, got {self.moe_d_ff}")
        elif self.n_shared_experts:
            raise ValueError("n_shared_experts needs n_experts > 0 (shared experts sit beside routed ones)")

    # --- derived sizes ---
    @property
    def q_dim(self) -> int:
        """Width of all query heads together: n_heads * head_dim."""
        return self.n_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        """Width of all key (or value) heads together: n_kv_heads * head_dim."""
        return self.n_kv_heads * self.head_dim

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 0

    # --- serialisation ---
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from a plain dict, rejecting unknown keys by name."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config field(s): {', '.join(unknown)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (re-validated)."""
        return dataclasses.replace(self, **changes)


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
