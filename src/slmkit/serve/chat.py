"""Chat messages -> the prompt text the model continues.

The generation engine owns chat-template rendering (`slm chat` uses the same code); this module is
the server's one call into it, so both render a conversation identically. Until that module is
available, it renders the tokenizer's own Jinja `chat_template` (Hugging Face semantics, sandboxed),
or a plain ChatML layout when the tokenizer has none.
"""

from __future__ import annotations

from functools import lru_cache

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def render_chat(tokenizer, messages: list[dict]) -> str:
    """messages: [{"role": ..., "content": str}, ...] -> text ending where the assistant's reply starts."""
    try:
        from slmkit.infer.chat import render_chat as engine_render  # the engine's renderer, when present
    except ImportError:
        engine_render = None
    if engine_render is not None:
        return engine_render(tokenizer, messages, add_generation_prompt=True)
    template = _compile(getattr(tokenizer, "chat_template", None) or CHATML)
    specials = {s: s for s in getattr(tokenizer, "special_tokens", {})}
    eos = getattr(tokenizer, "eos_token", None) or ""
    return template.render(messages=messages, add_generation_prompt=True, eos_token=eos,
                           bos_token=specials.get("<|begin_of_text|>", ""))


@lru_cache(maxsize=8)
def _compile(source: str):
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(source)
