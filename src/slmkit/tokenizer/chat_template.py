"""Chat messages -> prompt text: the tokenizer's Jinja chat template, or a plain transcript.

Templates follow Hugging Face semantics (`tokenizer_config.json`'s `chat_template`, rendered in a
sandbox with trim_blocks/lstrip_blocks, `raise_exception`, `bos_token`/`eos_token`), so a Qwen3
or Llama 3 template renders here exactly as `AutoTokenizer.apply_chat_template` renders it.
A tokenizer without a template (a base model) gets a "User: ... / Assistant:" transcript, with
"\nUser:" as the stop string that ends the assistant's turn.
"""

from __future__ import annotations

from functools import lru_cache

from slmkit.errors import TokenizerError

TRANSCRIPT_STOP = "\nUser:"
_ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = True, **template_vars) -> str:
    """messages: [{"role": "user"|"assistant"|"system", "content": str}, ...] -> text to continue."""
    for k, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str) or "role" not in message:
            raise TokenizerError(f"chat message {k} must be a mapping with 'role' and string 'content'")
    if not getattr(tokenizer, "chat_template", None):
        lines = [f"{_ROLE_NAMES.get(m['role'], m['role'].title())}: {m['content']}" for m in messages]
        return "\n".join(lines) + ("\nAssistant:" if add_generation_prompt else "")
    import jinja2

    try:
        return _compile(tokenizer.chat_template).render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            eos_token=tokenizer.eos_token or "",
            bos_token=template_vars.pop("bos_token", ""),
            **template_vars,
        )
    except jinja2.TemplateError as e:
        raise TokenizerError(f"the tokenizer's chat template failed: {e}") from None


def chat_stop_strings(tokenizer) -> list[str]:
    """Extra stop strings a conversation needs: none with a template (EOS ends the turn)."""
    return [] if getattr(tokenizer, "chat_template", None) else [TRANSCRIPT_STOP]


@lru_cache(maxsize=8)
def _compile(source: str):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise TokenizerError(f"the tokenizer's chat template is not valid Jinja: {e}") from None
