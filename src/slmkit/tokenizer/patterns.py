"""Pre-tokenization regexes: text is cut into pieces and BPE never merges across pieces."""

from slmkit.errors import TokenizerError

# GPT-2 (as in tiktoken's "gpt2" encoding).
GPT2 = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

# Llama 3 / tiktoken cl100k: case-insensitive contractions, digits in groups of at most three.
LLAMA3 = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2 / Qwen3: as Llama 3 but every digit is its own piece.
QWEN2 = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"""
    r"""| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

PATTERNS = {"gpt2": GPT2, "llama3": LLAMA3, "qwen2": QWEN2}


def resolve_pattern(name_or_regex: str) -> str:
    """A pattern name ('gpt2', 'llama3', 'qwen2') or a literal regex."""
    if name_or_regex in PATTERNS:
        return PATTERNS[name_or_regex]
    if len(name_or_regex) < 12 and name_or_regex.isidentifier():
        raise TokenizerError(
            f"unknown pre-tokenization pattern '{name_or_regex}' (choose one of: {', '.join(PATTERNS)})"
        )
    return name_or_regex
