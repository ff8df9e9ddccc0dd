"""Evaluation: how well a model predicts text (loss, perplexity, bits per byte — one definition, in
`slmkit.eval.likelihood`) and how fast it decodes (`slmkit.eval.speed`).

    from slmkit.eval import score_documents
    totals = score_documents(model, tokenizer, ["Once upon a time ...", "Tom had a red ball ..."], seq_len=256)
    totals.loss, totals.perplexity, totals.bits_per_byte
"""

from slmkit.eval.likelihood import (
    LikelihoodTotals, document_stream, score_batches, score_documents, score_tokens, token_byte_lengths,
    token_windows,
)
from slmkit.eval.speed import decode_speed

__all__ = [
    "LikelihoodTotals", "decode_speed", "document_stream", "score_batches", "score_documents", "score_tokens",
    "token_byte_lengths", "token_windows",
]
