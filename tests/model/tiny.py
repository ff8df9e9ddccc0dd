"""Tiny configs shared by the model tests (a few thousand parameters, milliseconds per forward)."""

from slmkit.model import ModelConfig


def tiny_config(**overrides) -> ModelConfig:
    fields = dict(vocab_size=64, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, d_ff=48,
                  max_seq_len=64, qk_norm=True, tie_embeddings=False)
    fields.update(overrides)
    return ModelConfig(**fields)


FAMILY_CONFIGS = {
    "qwen3": {},
    "llama": dict(qk_norm=False, tie_embeddings=True),
    "gpt2": dict(norm="layernorm", mlp="gelu", positions="learned", n_kv_heads=4, head_dim=None, qk_norm=False,
                 attn_qkv_bias=True, attn_out_bias=True, mlp_bias=True, tie_embeddings=True),
    "sinusoidal": dict(positions="sinusoidal", qk_norm=False),
    "moe": dict(n_experts=4, moe_top_k=2, moe_d_ff=16, n_shared_experts=1),
}

