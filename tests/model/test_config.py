"""ModelConfig validation: bad values fail at construction, naming the field."""

import pytest

from slmkit.model import ModelConfig


@pytest.mark.parametrize("fields, field_named", [
    (dict(d_model=100, n_heads=3), "n_heads"),
    (dict(n_heads=4, n_kv_heads=3), "n_kv_heads"),
    (dict(norm="batchnorm"), "norm"),
    (dict(mlp="relu"), "mlp"),
    (dict(positions="alibi"), "positions"),
    (dict(rope_scaling="dynamic"), "rope_scaling"),
    (dict(head_dim=7), "head_dim"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(dropout=1.5), "dropout"),
    (dict(n_experts=4, moe_top_k=5), "moe_top_k"),
    (dict(n_experts=4, mlp="gelu"), "mlp"),
    (dict(n_shared_experts=1), "n_shared_experts"),
])
def test_invalid_config_names_the_field(fields, field_named):
    with pytest.raises(ValueError, match=field_named):
        ModelConfig(**fields)


def test_defaults_fill_kv_heads_head_dim_and_expert_width():
    config = ModelConfig(d_model=96, n_heads=6, d_ff=200, n_experts=2, moe_top_k=1)
    assert (config.n_kv_heads, config.head_dim, config.moe_d_ff) == (6, 16, 200)


def test_head_dim_is_independent_of_d_model():
    config = ModelConfig(d_model=640, n_heads=4, n_kv_heads=1, head_dim=160)
    assert config.q_dim == 640 and config.kv_dim == 160
    assert ModelConfig(d_model=64, n_heads=4, head_dim=32).q_dim == 128


def test_dict_round_trip_and_unknown_keys():
    config = ModelConfig(n_experts=4, moe_top_k=2)
    assert ModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="d_modle"):
        ModelConfig.from_dict({"d_modle": 3})
