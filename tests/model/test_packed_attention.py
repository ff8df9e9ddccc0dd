"""Packed rows: with document_ids, each document's logits equal running it alone (attention never crosses
documents, positions restart), padding gives no NaN, and the mask-free paths are unchanged."""

import pytest
import torch

from slmkit.errors import SlmError
from slmkit.model import Decoder, KVCache
from slmkit.model.kv_cache import document_causal_mask

from .tiny import tiny_config

LENGTHS = (5, 9, 3)  # three documents packed into one row of 20: 17 tokens + 3 padding


def packed_row(vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    docs = [torch.randint(0, vocab, (n,), generator=g) for n in LENGTHS]
    seq = 20
    ids = torch.zeros(1, seq, dtype=torch.long)
    document_ids = torch.full((1, seq), -1)
    at = 0
    for d, doc in enumerate(docs):
        ids[0, at:at + len(doc)] = doc
        document_ids[0, at:at + len(doc)] = d
        at += len(doc)
    return docs, ids, document_ids


@torch.no_grad()
def test_each_document_sees_only_itself(family_config):
    model = Decoder(family_config).eval()
    docs, ids, document_ids = packed_row(family_config.vocab_size)
    packed = model(ids, document_ids=document_ids).logits
    assert torch.isfinite(packed).all()  # padding rows are not NaN
    at = 0
    for doc in docs:
        alone = model(doc[None]).logits
        torch.testing.assert_close(packed[:, at:at + len(doc)], alone, rtol=1e-5, atol=1e-5)
        at += len(doc)


@torch.no_grad()
def test_without_document_ids_the_documents_would_mix():
    """The planted fault: the same packed row without document_ids gives other logits for later documents."""
    model = Decoder(tiny_config()).eval()
    docs, ids, document_ids = packed_row(64)
    masked = model(ids, document_ids=document_ids).logits
    plain = model(ids).logits
    second = slice(LENGTHS[0], LENGTHS[0] + LENGTHS[1])
    assert not torch.allclose(masked[:, second], plain[:, second], atol=1e-3)
    torch.testing.assert_close(masked[:, :LENGTHS[0]], plain[:, :LENGTHS[0]])  # the first document is the same


def test_mask_and_positions_match_a_loop():
    document_ids = torch.tensor([[0, 0, 1, 1, 1, 2, -1, -1], [0, 0, 0, 0, 0, 0, 0, 1]])
    mask, positions = document_causal_mask(document_ids)
    assert mask.shape == (2, 1, 8, 8)
    for b in range(2):
        for q in range(8):
            dq = int(document_ids[b, q])
            assert int(positions[b, q]) == sum(int(document_ids[b, s]) == dq for s in range(q))
            for k in range(8):
                expected = (k == q) if dq < 0 else (k <= q and int(document_ids[b, k]) == dq)
                assert bool(mask[b, 0, q, k]) == expected, (b, q, k)


@torch.no_grad()
def test_positions_restart_unless_given():
    model = Decoder(tiny_config(positions="learned", qk_norm=False)).eval()
    _, ids, document_ids = packed_row(64)
    _, restarted = document_causal_mask(document_ids)
    implicit = model(ids, document_ids=document_ids).logits
    explicit = model(ids, document_ids=document_ids, positions=restarted).logits
    torch.testing.assert_close(implicit, explicit)
    counting = model(ids, document_ids=document_ids, positions=torch.arange(20)[None]).logits
    assert not torch.allclose(implicit[:, LENGTHS[0]:], counting[:, LENGTHS[0]:], atol=1e-3)


@torch.no_grad()
def test_one_document_per_row_is_the_plain_causal_path():
    model = Decoder(tiny_config()).eval()
    ids = torch.randint(0, 64, (2, 12))
    torch.testing.assert_close(model(ids, document_ids=torch.zeros(2, 12, dtype=torch.long)).logits, model(ids).logits)


@torch.no_grad()
def test_attention_mask_marks_padding_for_document_ids():
    """Padding given by attention_mask (document id 0 there) acts as document id -1."""
    model = Decoder(tiny_config()).eval()
    _, ids, document_ids = packed_row(64)
    real = document_ids >= 0
    a = model(ids, document_ids=document_ids.clamp(min=0), attention_mask=real.long()).logits
    b = model(ids, document_ids=document_ids).logits
    torch.testing.assert_close(a[real], b[real])


def test_document_ids_with_a_cache_is_refused():
    model = Decoder(tiny_config())
    cache = KVCache.for_model(model, rows=1, max_len=16)
    with pytest.raises(SlmError, match="KV cache"):
        model(torch.zeros(1, 4, dtype=torch.long), document_ids=torch.zeros(1, 4, dtype=torch.long), cache=cache)


def test_gradients_do_not_cross_documents():
    """The loss on the second document alone has no gradient on the first document's embeddings."""
    model = Decoder(tiny_config())
    _, ids, document_ids = packed_row(64)
    start, n = LENGTHS[0], LENGTHS[1]
    targets = torch.full_like(ids, -100)
    targets[0, start:start + n - 1] = ids[0, start + 1:start + n]
    embedded = model.embed(ids).detach().requires_grad_(True)
    handle = model.embed.register_forward_hook(lambda module, inputs, output: embedded)
    try:
        model(ids, targets, document_ids=document_ids).loss.backward()
    finally:
        handle.remove()
    influence = embedded.grad[0].abs().sum(-1)
    assert influence[:start].max() == 0
    assert influence[start:start + n].max() > 0
