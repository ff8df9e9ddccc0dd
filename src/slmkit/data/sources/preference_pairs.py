"""Synthetic preference pairs for DPO and reward models, made offline from the instruction data, checkable by code.

Each pair takes one synthetic chat example (instructions.py) as its prompt and reference answer: `chosen` is the
reference, which follows the request; `rejected` is the same answer with one flaw planted, so the preference is
known and a rule can tell the two apart:
- "wrong_name": the hero's name replaced by another character's ("a cat named Max" -> a story about Ollie);
- "wrong_character": the requested kind replaced ("a cat" -> a story about a frog);
- "missing_object": the requested object replaced by another one (the key becomes a kite);
- "unfinished": the story cut off in the middle of a sentence;
- "wrong_answer": a question about a story answered with the distractor (the friend's name instead of the hero's).
The first four come from story requests (in turn), the last from questions and multi-turn chats. A pair is kept only
when `check_answer` accepts `chosen` and rejects `rejected` (for "unfinished", when `rejected` does not end a
sentence), so every flaw is real. The held-out split uses the instruction data's held-out casts.

A record is TRL's conversational preference format plus what the checks need:
    {"prompt": [{"role": "user", "content": ...}], "chosen": [{"role": "assistant", "content": ...}],
     "rejected": [{"role": "assistant", "content": ...}], "flaw": "missing_object", "check": {...}}

    write_preference_files("data/prefs.jsonl", pairs=2000, heldout=200)   # + data/prefs.heldout.jsonl
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from slmkit.data.sources import synthetic_words as W
from slmkit.data.sources.instruction_checks import check_answer
from slmkit.data.sources.instructions import generate_instruction_examples, heldout_path
from slmkit.errors import DataError
from slmkit.fileio import atomic_file

STORY_FLAWS = ("wrong_name", "wrong_character", "missing_object", "unfinished")
FLAWS = (*STORY_FLAWS, "wrong_answer")
_ENDS_SENTENCE = re.compile(r"[.!?][\"']?\s*$")


def _replace_words(text: str, old: str, new: str) -> str:
    """Every whole-word `old` (also with a plural "s"/"es" or possessive) -> `new`, keeping a capital first letter."""
    pattern = re.compile(rf"\b({re.escape(old)})(?=(?:e?s)?\b|'s\b)", re.IGNORECASE)

    def swap(match: re.Match) -> str:
        return new[:1].upper() + new[1:] if match.group(1)[:1].isupper() else new

    return pattern.sub(swap, text)


def _other(rng: random.Random, choices: list[str], avoid: list[str]) -> str:
    words = {w for a in avoid for w in a.lower().split()}
    options = [c for c in choices if not set(c.lower().split()) & words]
    return rng.choice(options)


def flawed_story(rng: random.Random, story: str, check: dict, flaw: str) -> str:
    """The story with `flaw` planted (see the module docstring)."""
    name, kind, thing = check["name"], check["character"], check["object"]
    if flaw == "wrong_name":
        return _replace_words(story, name, _other(rng, [c[0] for c in W.CHARACTERS], [name]))
    if flaw == "wrong_character":
        return _replace_words(story, kind, _other(rng, [k for k, _ in W.REQUEST_KINDS], [kind, thing]))
    if flaw == "missing_object":
        return _replace_words(story, thing, _other(rng, [o for o, _ in W.OBJECTS], [thing, kind]))
    if flaw == "unfinished":
        words = list(re.finditer(r"\S+", story))
        cut = rng.randint(len(words) * 2 // 5, len(words) * 3 // 5)
        while cut > 1 and _ENDS_SENTENCE.search(words[cut - 1].group()):  # stop mid-sentence, never after a full stop
            cut -= 1
        return story[:words[cut - 1].end()]
    raise DataError(f"unknown flaw {flaw!r}; choose from {', '.join(FLAWS)}")


def wrong_answer(reply: str, check: dict) -> str | None:
    """The reply with its answer swapped for the first distractor the check rejects; None when there is none."""
    answer = check["answer"]
    if not check.get("reject") or not isinstance(answer, str):
        return None
    return _replace_words(reply, answer, check["reject"][0])


def is_preferred_by_rule(record: dict, text: str) -> bool:
    """Whether `text` satisfies the pair's rule: the example's check, and for "unfinished" a finished sentence."""
    if record["flaw"] == "unfinished":
        return bool(_ENDS_SENTENCE.search(text))
    return check_answer(record["check"], text)


def _pair(rng: random.Random, example: dict, flaw: str) -> dict | None:
    prompt, chosen = example["messages"][:-1], example["messages"][-1]["content"]
    check = example["check"]
    rejected = wrong_answer(chosen, check) if flaw == "wrong_answer" else flawed_story(rng, chosen, check, flaw)
    if rejected is None:
        return None
    record = {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
              "rejected": [{"role": "assistant", "content": rejected}], "flaw": flaw, "check": check}
    if rejected == chosen or not is_preferred_by_rule(record, chosen) or is_preferred_by_rule(record, rejected):
        return None
    return record


def generate_preference_pairs(n: int, seed: int = 0, split: str = "train") -> Iterator[dict]:
    """`n` pairs, four fifths from story requests (the four story flaws in turn) and one fifth wrong answers to
    questions; the same pairs for the same arguments."""
    if n < 0:
        raise DataError(f"the number of pairs must be 0 or more (got {n})")
    rng = random.Random(f"slmkit-prefs-{split}-{seed}")
    stories = generate_instruction_examples(10**9, seed=seed, kinds=["story_request"], split=split)
    questions = generate_instruction_examples(10**9, seed=seed + 1, kinds=["story_question", "multi_turn"], split=split)
    made = 0
    while made < n:
        flaw = FLAWS[made % len(FLAWS)]
        source = questions if flaw == "wrong_answer" else stories
        for _ in range(100):
            record = _pair(rng, next(source), flaw)
            if record is not None:
                break
        else:
            raise DataError(f"could not plant the flaw {flaw!r} in 100 examples in a row")
        made += 1
        yield record


def write_preference_files(out: str | Path, pairs: int = 2000, heldout: int = 200, seed: int = 0) -> dict:
    """Write `pairs` train pairs to `out` and `heldout` held-out pairs beside it (JSONL, each file atomically).
    Returns {"train": {"path", "counts": {flaw: n}}, "heldout": {...}}."""
    if pairs < 1:
        raise DataError(f"pairs must be at least 1 (got {pairs})")
    paths, sizes = {"train": Path(out), "heldout": heldout_path(out)}, {"train": pairs, "heldout": heldout}
    report = {}
    for split, path in paths.items():
        rows = list(generate_preference_pairs(sizes[split], seed=seed, split=split))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        counts = Counter(r["flaw"] for r in rows)
        report[split] = {"path": str(path), "counts": {f: counts[f] for f in FLAWS}}
    return report
