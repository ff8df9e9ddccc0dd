"""An ollama Modelfile beside a GGUF file: `ollama create NAME -f model.Modelfile`, then `ollama run NAME`.

    text = modelfile_text(tokenizer, "demo.gguf", context_length=256)

ollama's templates are Go templates, not Jinja. The chat template is translated by rendering it: each role's
message with a sentinel content gives that role's prefix and suffix, and the generation prompt is what
`add_generation_prompt` appends; the translation is kept only when it reproduces the Jinja rendering of a
system + user + assistant + user conversation exactly (ChatML, Llama 3 and other per-message templates do).
Otherwise, and for a model without a chat template, the Modelfile passes the prompt through raw
(`{{ .Prompt }}`) and says so in a comment. Stops: the end-of-text token and each role's closing text.
Parameters: greedy (temperature 0, top_k 1), no repeat penalty, num_ctx = the model's context.
"""

from __future__ import annotations

from slmkit.errors import TokenizerError
from slmkit.tokenizer.chat_template import render_chat

SENTINEL = "\x00CONTENT\x00"
ROLES = ("system", "user", "assistant")
CHECK_CONVERSATION = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi!"},
                      {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "A story?"}]


def go_template(tokenizer) -> str | None:
    """The chat template as an ollama Go template, or None when it is not a per-message template."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    wrappers = {}
    try:
        for role in ROLES:
            text = render_chat(tokenizer, [{"role": role, "content": SENTINEL}], add_generation_prompt=False)
            if text.count(SENTINEL) != 1:
                return None
            wrappers[role] = text.split(SENTINEL)
        user = [{"role": "user", "content": "x"}]
        plain = render_chat(tokenizer, user, add_generation_prompt=False)
        generation = render_chat(tokenizer, user, add_generation_prompt=True).removeprefix(plain)
        expected = render_chat(tokenizer, CHECK_CONVERSATION, add_generation_prompt=True)
    except TokenizerError:
        return None
    composed = "".join(wrappers[m["role"]][0] + m["content"] + wrappers[m["role"]][1] for m in CHECK_CONVERSATION)
    if composed + generation != expected or "{{" in "".join(sum(wrappers.values(), [])) + generation:
        return None
    branches = "".join(f'{{{{ {"if" if k == 0 else "else if"} eq .Role "{role}" }}}}{prefix}{{{{ .Content }}}}{suffix}'
                       for k, (role, (prefix, suffix)) in enumerate(wrappers.items()))
    return f"{{{{- range .Messages }}}}{branches}{{{{ end }}}}{{{{ end }}}}{generation}"


def stop_strings(tokenizer) -> list[str]:
    stops = [tokenizer.eos_token] if getattr(tokenizer, "eos_token", None) else []
    if go_template(tokenizer) is not None:
        for role in ROLES:
            suffix = render_chat(tokenizer, [{"role": role, "content": SENTINEL}], False).split(SENTINEL)[1].strip()
            if suffix and suffix not in stops:
                stops.append(suffix)
    return stops


def modelfile_text(tokenizer, gguf_name: str, context_length: int) -> str:
    template = go_template(tokenizer)
    lines = [f"# ollama create NAME -f {gguf_name.rsplit('.', 1)[0]}.Modelfile   (written by slmkit)",
             f"FROM ./{gguf_name}"]
    if template is None:
        reason = "no chat template" if not getattr(tokenizer, "chat_template", None) else \
            "a chat template that is not one wrapper per message"
        lines += [f"# The model has {reason}: prompts go to it as written.", 'TEMPLATE """{{ .Prompt }}"""']
    else:
        lines.append(f'TEMPLATE """{template}"""')
    lines += [f'PARAMETER stop "{stop}"' for stop in stop_strings(tokenizer)]
    lines += ["# Greedy decoding, as slmkit's tests compare it; raise temperature for varied stories.",
              "PARAMETER temperature 0", "PARAMETER top_k 1", "PARAMETER repeat_penalty 1",
              f"PARAMETER num_ctx {context_length}"]
    return "\n".join(lines) + "\n"
