"""Document cleaning: Unicode and whitespace normalisation, then length, word-count, non-letter and
Gopher repetition filters, each counting what it removed (`CleanStats`). `DocumentCleaner` is the
per-document reference; `BatchCleaner`, what `slm prepare` runs, gives the same result vectorised
over a batch on one shared word split (`words`), which MinHash reuses. Reads `slmkit.data.config` only.
"""

from slmkit.data.clean.cleaning import BatchCleaner, CleanedBatch, CleanStats, DocumentCleaner, normalize
from slmkit.data.clean.words import WordBatch, WordTable, split_words

__all__ = ["BatchCleaner", "CleanStats", "CleanedBatch", "DocumentCleaner", "WordBatch", "WordTable", "normalize",
           "split_words"]
