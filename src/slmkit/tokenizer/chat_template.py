"""Chat messages -> prompt text: the tokenizer's Jinja chat template, or a plain transcript.

    text = render_chat(tok, [{"role": "user", "content": "Hi"}])          # ends with the generation prompt
    text, spans = render_chat_with_spans(tok, messages, add_generation_prompt=False)
    tok, added_ids = with_default_chat_template(tok)                      # ChatML for a template-less tokenizer

Templates follow Hugging Face semantics (`tokenizer_config.json`'s `chat_template`, rendered in a
sandbox with trim_blocks/lstrip_blocks, `raise_exception`, `bos_token`/`eos_token`, loop controls,
HF's `tojson`), so a Qwen3 or Llama 3 template renders here exactly as `AutoTokenizer.apply_chat_template`
renders it. `{% generation %}...{% endgeneration %}` (HF's AssistantTracker extension, used by TRL's
*_training.jinja templates for assistant-only loss) renders its body and, in `render_chat_with_spans`,
records the body's character span. A tokenizer without a template (a base model) gets a
"User: ... / Assistant:" transcript, with "\nUser:" as the stop string that ends the assistant's turn.
"""

from __future__ import annotations

import json
import re
from contextvars import ContextVar
from functools import lru_cache

from slmkit.errors import TokenizerError

TRANSCRIPT_STOP = "\nUser:"
_ROLE_NAMES = {"user": "User", "assistant": "Assistant", "system": "System"}
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")
# ChatML. The generation markers cover what the assistant writes, content and end-of-turn "<|im_end|>\n",
# not its "<|im_start|>assistant\n" header (the generation prompt) - TRL's qwen3 training span.
DEFAULT_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>\\n' }}{%- endgeneration %}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")  # TRL's test for assistant-only-loss support
_tracking: ContextVar = ContextVar("slmkit_generation_spans", default=None)


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = True, **template_vars) -> str:
    """messages: [{"role": "user"|"assistant"|"system", "content": str}, ...] -> text to continue."""
    _check_messages(messages)
    if not getattr(tokenizer, "chat_template", None):
        lines = [f"{_ROLE_NAMES.get(m['role'], m['role'].title())}: {m['content']}" for m in messages]
        return "\n".join(lines) + ("\nAssistant:" if add_generation_prompt else "")
    return _render(tokenizer, messages, add_generation_prompt, template_vars)[0]


def render_chat_with_spans(tokenizer, messages: list[dict], add_generation_prompt: bool = False,
                           **template_vars) -> tuple[str, list[tuple[int, int]]]:
    """(text, spans): the rendered conversation and the [start, end) character span of every
    `{% generation %}` block in it, in order ([] when the template has no markers)."""
    _check_messages(messages)
    if not getattr(tokenizer, "chat_template", None):
        raise TokenizerError("the tokenizer has no chat template; give it one (e.g. with_default_chat_template)")
    return _render(tokenizer, messages, add_generation_prompt, template_vars)


def has_generation_markers(template: str | None) -> bool:
    """Whether a chat template marks the assistant's text with {% generation %} ... {% endgeneration %}."""
    return bool(template) and _GENERATION_TAG.search(template) is not None


def chat_stop_strings(tokenizer) -> list[str]:
    """Extra stop strings a conversation needs: none with a template (EOS ends the turn)."""
    return [] if getattr(tokenizer, "chat_template", None) else [TRANSCRIPT_STOP]


def with_default_chat_template(tokenizer):
    """(tokenizer, added_ids): a copy of `tokenizer` that renders chats as ChatML.

    For a tokenizer without a chat template (one trained with `slm tokenizer train`): `<|im_start|>` and
    `<|im_end|>` become special tokens (those it lacks get new ids at the end of its vocabulary, listed in
    `added_ids`), DEFAULT_CHAT_TEMPLATE is set and `<|im_end|>` becomes the end-of-sequence token, so
    generation stops at the end of the assistant's turn. The caller grows the model's embedding and
    output head to `tokenizer.vocab_size` when `added_ids` is not empty (a model whose vocabulary is
    already padded beyond the tokenizer's may not need to). A tokenizer that has a template is returned
    unchanged with no added ids.
    """
    if getattr(tokenizer, "chat_template", None):
        return tokenizer, []
    missing = [t for t in CHATML_TOKENS if t not in tokenizer.special_tokens]
    chat_tok, added_ids = tokenizer.with_special_tokens(missing)
    chat_tok.chat_template = DEFAULT_CHAT_TEMPLATE
    chat_tok.eos_token = "<|im_end|>"
    return chat_tok, added_ids


def _check_messages(messages: list[dict]) -> None:
    for k, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str) or "role" not in message:
            raise TokenizerError(f"chat message {k} must be a mapping with 'role' and string 'content'")


def _render(tokenizer, messages, add_generation_prompt, template_vars) -> tuple[str, list[tuple[int, int]]]:
    import jinja2

    template = _compile(tokenizer.chat_template)
    blocks: list[str] = []
    spans: list[tuple[int, int]] = []
    token = _tracking.set((blocks, spans))
    try:
        # generate() yields the output piece by piece, so a generation block's start is what came before it
        for block in template.generate(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            eos_token=tokenizer.eos_token or "",
            bos_token=template_vars.pop("bos_token", ""),
            **template_vars,
        ):
            blocks.append(block)
    except jinja2.TemplateError as e:
        raise TokenizerError(f"the tokenizer's chat template failed: {e}") from None
    finally:
        _tracking.reset(token)
    return "".join(blocks), spans


def _generation_extension():
    """HF's AssistantTracker: `{% generation %}body{% endgeneration %}` renders body and records its span."""
    import jinja2
    from jinja2.ext import Extension

    class GenerationSpans(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_record"), [], [], body).set_lineno(lineno)

        def _record(self, caller) -> str:
            text = caller()
            tracking = _tracking.get()
            if tracking is not None:
                blocks, spans = tracking
                start = sum(len(b) for b in blocks)
                spans.append((start, start + len(text)))
            return text

    return GenerationSpans


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # HF's override: Jinja's own tojson escapes HTML characters, which chat templates do not expect
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


@lru_cache(maxsize=8)
def _compile(source: str):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[_generation_extension(), "jinja2.ext.loopcontrols"])
    env.globals["raise_exception"] = raise_exception
    env.filters["tojson"] = _tojson
    try:
        return env.from_string(source)
    except jinja2.TemplateSyntaxError as e:
        raise TokenizerError(f"the tokenizer's chat template is not valid Jinja: {e}") from None
