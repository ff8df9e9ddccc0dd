"""Properties of the decoder that must hold for every family: causality, GQA, chunked loss, checkpointing."""

import pytest
import torch

from slmkit.model import Decoder

from .tiny import tiny_config


def _model(config, seed=0):
    torch.manual_seed(seed)
    return Decoder(config).eval()


def test_changing_a_later_token_never_changes_an_earlier_logit(family_config):
    model = _model(family_config)
    ids = torch.randint(0, 64, (2, 12))
    changed = ids.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % 64
    with torch.no_grad():
        a, b = model(ids).logits, model(changed).logits
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])  # the change is visible from its own position on


def test_gqa_equals_mha_with_duplicated_kv_heads():
    gqa = _model(tiny_config(n_heads=4, n_kv_heads=2))
    mha = Decoder(tiny_config(n_heads=4, n_kv_heads=4)).eval()
    state = gqa.state_dict()
    for name, tensor in list(state.items()):
        if name.endswith(("k_proj.weight", "v_proj.weight")):
            # [kv_heads * head_dim, d] -> each KV head repeated for the 2 query heads it serves
            heads = tensor.view(2, 8, -1)
            state[name] = heads.repeat_interleave(2, dim=0).reshape(32, -1)
    mha.load_state_dict(state)
    ids = torch.randint(0, 64, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(mha(ids).logits, gqa(ids).logits)


def test_mqa_runs_and_is_causal():
    model = _model(tiny_config(n_heads=4, n_kv_heads=1))
    ids = torch.randint(0, 64, (1, 6))
    with torch.no_grad():
        full = model(ids).logits
        prefix = model(ids[:, :4]).logits
    torch.testing.assert_close(full[:, :4], prefix)


def test_chunked_loss_equals_plain_loss_and_gradients(family_config):
    model = _model(family_config).train()
    ids = torch.randint(0, 64, (2, 13))
    targets = torch.randint(0, 64, (2, 13))
    targets[0, :4] = -100  # ignored positions must count the same way in both
    plain = model(ids, targets)
    plain.loss.backward()
    plain_grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    chunked = model(ids, targets, loss_chunk_size=5)
    assert chunked.logits is None
    chunked.loss.backward()
    torch.testing.assert_close(chunked.loss, plain.loss)
    for name, p in model.named_parameters():
        if name in plain_grads:
            torch.testing.assert_close(p.grad, plain_grads[name], msg=name)


def test_loss_ignores_minus_100_and_equals_cross_entropy():
    model = _model(tiny_config())
    ids = torch.randint(0, 64, (2, 8))
    targets = ids.roll(-1, dims=1)
    targets[:, -1] = -100
    out = model(ids, targets)
    manual = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, 64), targets[:, :-1].reshape(-1))
    torch.testing.assert_close(out.loss, manual)


def test_activation_checkpointing_changes_no_gradient(family_config):
    model = _model(family_config).train()
    ids = torch.randint(0, 64, (2, 9))

    def grads(checkpointing: bool):
        model.zero_grad()
        model.gradient_checkpointing = checkpointing
        out = model(ids, ids)
        loss = out.loss + (out.aux_loss if out.aux_loss is not None else 0)
        loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys() and plain
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], msg=name)


def test_checkpointing_really_recomputes():
    """The switch is not a no-op: with it on, block forwards run again during backward."""
    model = _model(tiny_config()).train()
    calls = []
    model.blocks[0].attn.register_forward_hook(lambda *a: calls.append(1))
    for flag, expected in ((False, 1), (True, 2)):
        calls.clear()
        model.gradient_checkpointing = flag
        model(torch.randint(0, 64, (1, 5)), torch.randint(0, 64, (1, 5))).loss.backward()
        assert len(calls) == expected


def test_tied_head_shares_the_embedding():
    model = _model(tiny_config(tie_embeddings=True))
    assert model.head.weight is model.embed.weight


def test_residual_projections_get_scaled_init():
    config = tiny_config(n_layers=8, d_model=256, d_ff=512, n_heads=4, n_kv_heads=4, head_dim=64)
    model = _model(config)
    expected = 0.02 / (2 * 8) ** 0.5
    assert model.blocks[3].attn.out_proj.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert model.blocks[3].mlp.down_proj.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert model.blocks[3].attn.q_proj.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_training_attention_builds_no_mask(monkeypatch):
    """Training calls SDPA with is_causal=True and no attn_mask (no T x T tensor)."""
    seen = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, **kw):
        seen.append((attn_mask, is_causal))
        return original(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model = _model(tiny_config()).train()
    model(torch.randint(0, 64, (2, 6)), torch.randint(0, 64, (2, 6))).loss.backward()
    assert seen and all(mask is None and causal for mask, causal in seen)
