"""The one specialised decode step (`OneTokenStep`, one token for each of B cache rows) against
`Decoder.forward`: the same logits and the same tokens for every model it accepts, with dense, fused,
quantized and wrapped projections; the models it refuses say why and decode with Decoder.forward."""

import pytest
import torch
from torch import nn

from slmkit.infer import Generator, ModelRunner
from slmkit.infer.one_token_step import refusal
from slmkit.model import KVCache
from slmkit.quant import quantize_model
from slmkit.quant.kernels import DenseKernel, ModuleKernel, OpKernel

from .conftest import assert_decodes_like_forward, random_model

FAST_FAMILIES = {
    "qwen3": {},
    "llama": dict(qk_norm=False, tie_embeddings=True),
    "mha_biases": dict(n_kv_heads=4, attn_qkv_bias=True, attn_out_bias=True, mlp_bias=True),
    "yarn": dict(rope_scaling="yarn", rope_scaling_factor=2.0),
}


def _randomize_biases_and_norms(model):
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:  # trained models do not keep ones and zeros
                p.copy_(p + 0.3 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize("family", list(FAST_FAMILIES))
def test_one_token_path_matches_full_forward(family):
    model = random_model(**FAST_FAMILIES[family])
    _randomize_biases_and_norms(model)
    runner = ModelRunner(model)
    assert runner.fast is not None
    ids = torch.randint(0, 300, (1, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(ids).logits[0]
    cache = runner.new_cache(2, 40)
    for row in (0, 1):  # any row of the cache
        cache.set_length(row, 0)
        torch.testing.assert_close(runner.forward(ids[:, :5], cache, row0=row), full[4:5])
        for t in range(5, 30):
            token = int(ids[0, t]) if t % 2 else ids[:, t:t + 1]  # a Python int or a [1, 1] tensor
            out = runner.decode(token, cache, row) if t % 2 else runner.forward(token, cache, row0=row)
            torch.testing.assert_close(out, full[t:t + 1], rtol=1e-4, atol=1e-5)
        assert cache.lengths[row] == 30
    # rolling back (as speculative decoding does) and decoding again gives the same logits
    cache.set_length(0, 12)
    torch.testing.assert_close(runner.decode(int(ids[0, 12]), cache, 0), full[12:13], rtol=1e-4, atol=1e-5)


def test_one_token_path_equals_general_path_tokens():
    model = random_model()
    fast, slow = Generator(model, eos_ids=set()), Generator(model, eos_ids=set())
    slow.runner.fast = None
    for prompt in ([1, 2, 3], list(range(40, 57))):
        assert (fast.generate(prompt, max_new_tokens=40, temperature=0).token_ids
                == slow.generate(prompt, max_new_tokens=40, temperature=0).token_ids)
        assert (fast.generate(prompt, max_new_tokens=20, temperature=0.8, top_p=0.9, seed=3).token_ids
                == slow.generate(prompt, max_new_tokens=20, temperature=0.8, top_p=0.9, seed=3).token_ids)


def test_refused_models_say_why_and_use_decoder_forward():
    gpt2 = ModelRunner(random_model(norm="layernorm", mlp="gelu", positions="learned", qk_norm=False))
    assert gpt2.fast is None and "learned positions" in gpt2.fast_path_refusal
    moe = ModelRunner(random_model(n_experts=4, moe_top_k=2, moe_d_ff=16))
    assert moe.fast is None and "MoE" in moe.fast_path_refusal
    assert "bfloat16" in refusal(random_model().to(torch.bfloat16))
    assert ModelRunner(random_model(), fast=False).fast is None
    assert ModelRunner(random_model()).fast_path_refusal is None


def test_full_cache_row_is_an_error():
    model = random_model()
    runner = ModelRunner(model)
    cache = runner.new_cache(1, 8)
    runner.forward(torch.arange(8)[None], cache)
    with pytest.raises(Exception, match="full"):
        runner.decode(1, cache, 0)


@pytest.mark.parametrize("method", ["int8", "int4"])
def test_one_token_path_with_quantized_layers(method):
    from slmkit.quant import quantize_model

    model = random_model(d_model=64, d_ff=128, head_dim=16)
    quantize_model(model, method, group_size=32)
    runner, general = ModelRunner(model), ModelRunner(model, fast=False)
    assert runner.fast is not None and not isinstance(runner.fast.head, DenseKernel)
    assert isinstance(runner.fast.layers[0].qkv, OpKernel)  # q/k/v codes fused into one kernel call
    ids = torch.randint(0, 300, (1, 20), generator=torch.Generator().manual_seed(4))
    a, b = runner.new_cache(1, 32), general.new_cache(1, 32)
    runner.forward(ids[:, :6], a), general.forward(ids[:, :6], b)
    for t in range(6, 20):
        torch.testing.assert_close(runner.decode(int(ids[0, t]), a), general.forward(ids[:, t:t + 1], b),
                                   rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("family", list(FAST_FAMILIES) + ["int8", "int4"])
def test_many_rows_one_token_path_matches_full_forward(family):
    """One token for B rows of different lengths at once (what batched decoding runs), at
    rows row0.., against each row's own full forward; then the rows keep their own lengths."""
    quant = family in ("int8", "int4")
    model = random_model(**(dict(d_model=64, d_ff=128, head_dim=16) if quant else FAST_FAMILIES[family]))
    _randomize_biases_and_norms(model)
    if quant:
        quantize_model(model, family, group_size=32)
    runner = ModelRunner(model)
    assert runner.fast is not None
    g = torch.Generator().manual_seed(2)
    seqs = [torch.randint(0, 300, (1, n + 8), generator=g) for n in (5, 1, 11)]
    with torch.no_grad():
        full = [model(s).logits[0] for s in seqs]
    tol = dict(rtol=2e-2, atol=2e-2) if quant else dict(rtol=1e-4, atol=1e-5)
    cache = runner.new_cache(4, 40)
    for i, s in enumerate(seqs):  # prompts into rows 1..3 (row0 = 1)
        runner.forward(s[:, :s.shape[1] - 8], cache, row0=1 + i)
    for step in range(8):
        ids = torch.cat([s[:, s.shape[1] - 8 + step:s.shape[1] - 7 + step] for s in seqs]).view(3, 1)
        out = runner.forward(ids, cache, row0=1)
        assert out.shape == (3, 300)
        for i, s in enumerate(seqs):
            t = s.shape[1] - 8 + step
            torch.testing.assert_close(out[i:i + 1], full[i][t:t + 1], **tol)
    assert cache.lengths == [0, 13, 9, 19]


class LowRankWrapped(nn.Module):
    """A projection wrapped the way LoRA wraps one: base(x) + (x A^T) B^T * scale."""

    def __init__(self, base: nn.Linear, rank: int = 2):
        super().__init__()
        self.base, self.in_features, self.out_features = base, base.in_features, base.out_features
        g = torch.Generator().manual_seed(base.out_features)
        self.a = nn.Parameter(torch.randn(rank, base.in_features, generator=g) * 0.3)
        self.b = nn.Parameter(torch.randn(base.out_features, rank, generator=g) * 0.3)

    def forward(self, x):
        return self.base(x) + (x @ self.a.t()) @ self.b.t() * 0.5


@pytest.mark.parametrize("kind", ["wrapped", "nf4"])
def test_step_admits_projections_it_can_only_call(kind):
    """Layers without a fused form (a LoRA-style wrapper, NF4) are called as modules: same logits."""
    model = random_model(d_model=64, d_ff=128, head_dim=16)
    if kind == "nf4":
        quantize_model(model, "nf4")
    else:
        for block in model.blocks:
            block.attn.v_proj = LowRankWrapped(block.attn.v_proj)
            block.mlp.down_proj = LowRankWrapped(block.mlp.down_proj)
    runner = ModelRunner(model)
    assert runner.fast is not None
    assert isinstance(runner.fast.layers[0].qkv, ModuleKernel)
    if kind == "wrapped":
        assert isinstance(runner.fast.layers[0].gate_up, DenseKernel)  # the plain layers stay fused
    assert_decodes_like_forward(runner, model, torch.randint(0, 300, (2, 12), generator=torch.Generator().manual_seed(5)))


def test_step_equals_decoder_forward_with_the_same_cache():
    """Greedy decoding of 3 rows of different lengths: the step and Decoder.forward(cache=...) pick
    the same tokens and leave the same keys and values in the cache."""
    model = random_model()
    runner = ModelRunner(model)
    caches = [KVCache.for_model(model, rows=3, max_len=48) for _ in range(2)]
    prompts = [torch.randint(0, 300, (1, n), generator=torch.Generator().manual_seed(n)) for n in (4, 9, 2)]
    tokens = []
    for use_step, cache in zip((True, False), caches):
        with torch.no_grad():
            last = torch.stack([model(p, cache=cache, cache_row=r).logits[0, -1] for r, p in enumerate(prompts)])
            out = []
            for _ in range(20):
                ids = last.argmax(-1, keepdim=True)
                out.append(ids[:, 0].tolist())
                last = runner.fast.step(ids, cache) if use_step else model(ids, cache=cache).logits[:, -1]
        tokens.append(out)
    assert tokens[0] == tokens[1]
    assert caches[0].lengths == caches[1].lengths == [24, 29, 22]
    torch.testing.assert_close(caches[0].kv, caches[1].kv, rtol=1e-4, atol=1e-5)
