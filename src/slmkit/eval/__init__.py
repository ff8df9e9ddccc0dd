"""Evaluation: how well a model predicts held-out text (loss, perplexity, bits per byte — one definition, in
`slmkit.eval.likelihood`), benchmark tasks and suites (`harness`, `standard_tasks`, `suites`), baselines
(`ngram`), reports (`report`), lm-eval integration (`lm_eval_model`) and decode speed (`speed`).

    from slmkit.eval import score_documents
    totals = score_documents(model, tokenizer, ["Once upon a time ...", "Tom had a red ball ..."], seq_len=256)
    totals.loss, totals.perplexity, totals.bits_per_byte, totals.word_perplexity
"""

from slmkit.eval.likelihood import (
    LikelihoodTotals, document_loglikelihoods, document_stream, score_batches, score_documents, token_byte_lengths,
)
from slmkit.eval.speed import decode_speed

__all__ = [
    "LikelihoodTotals", "decode_speed", "document_loglikelihoods", "document_stream", "score_batches",
    "score_documents", "token_byte_lengths",
]
