"""Settings for training a tokenizer (the `tokenizer` section of a recipe)."""

from __future__ import annotations

from dataclasses import dataclass, field

from slmkit.tokenizer.patterns import PATTERNS


@dataclass
class TokenizerTrainConfig:
    input: list[str] = field(default_factory=list)  # text files (UTF-8)
    vocab_size: int = 4096  # bytes + merges + special tokens
    special_tokens: list[str] = field(default_factory=lambda: ["<|endoftext|>"])
    pattern: str = "gpt2"  # pre-tokenization: gpt2 | llama3 | qwen2
    out: str = "runs/tokenizer"
    num_workers: int = 0  # 0: one per CPU core

    def __post_init__(self):
        if self.pattern not in PATTERNS:
            raise ValueError(f"pattern must be one of {', '.join(PATTERNS)}, got {self.pattern!r}")
        if self.vocab_size < 256 + len(set(self.special_tokens)):
            raise ValueError(
                f"vocab_size {self.vocab_size} is too small: at least 256 + {len(set(self.special_tokens))} specials"
            )
