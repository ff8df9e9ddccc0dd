"""Synthetic chat data for supervised fine-tuning, made offline from the story generator, with answers code can check.

Three kinds of example, mixed in equal shares (the order shuffled per round, fixed by the seed):
- "story_request": "Write a story about a cat named Max who loses his key." -> a story that names Max, the cat
  and the key (checked when it is made).
- "story_question": a short story and a question its plot answers unambiguously ("Who lost the ball?") -> "Max."
- "multi_turn": a story request, its story, then a follow-up ("What was the cat's name?") with a checkable answer.

Each example is `{"messages": [{"role", "content"}, ...], "check": {...}}`; SFT loaders read `messages` and ignore
`check`, which `instruction_checks.check_answer` reads. A whole example (every turn) stays within `max_words`
(default 150: at most about 240 tokens, chat markers included, with a 4096-token BPE trained on TinyStories, so
an example fits a 256-token context); longer draws are thrown away and drawn again.

Held-out split without leaks: every example is built around a hero's name and object, and each (name, object)
pair belongs to one split only, by a hash of the pair (about 1 in 8 is held out). Every user prompt names its
pair, so no held-out prompt can appear in train, whatever the seeds; the splits also use different random streams.

    from slmkit.data.sources.instructions import generate_instruction_examples, write_instruction_files
    train = list(generate_instruction_examples(4000, seed=0))
    heldout = list(generate_instruction_examples(200, seed=0, split="heldout"))
    write_instruction_files("data/sft.jsonl", examples=4000, heldout=200)   # + data/sft.heldout.jsonl
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

from slmkit.data.sources import synthetic_words as W
from slmkit.data.sources.instruction_checks import mentions
from slmkit.data.sources.synthetic import OBJECT_PLOTS, Story, StoryCast, story_about
from slmkit.errors import DataError
from slmkit.fileio import atomic_file

KINDS = ("story_request", "story_question", "multi_turn")
SPLITS = ("train", "heldout")
MAX_WORDS = 150
MIN_MAX_WORDS = 120  # stories run to 80-140 words, multi-turn examples to 105-190; below this most draws are thrown away
HELDOUT_SHARE = 8  # one (name, object) pair in this many is held out

_POSSESSIVE = {"he": "his", "she": "her", "it": "its"}
_OBJECT = {"he": "him", "she": "her", "it": "it"}
SYSTEMS = [
    "You are a helpful assistant.",
    "You are a friendly storyteller who writes short stories for young children.",
    "You write simple stories for children and answer questions about them in a few words.",
]
# what the hero does in each plot, for requests that ask for one ("who loses his key")
ACTS = {
    "lost_thing": ["loses {pos} {thing}", "cannot find {pos} {thing}"],
    "stuck_in_tree": ["gets {pos} {thing} stuck in a tree"],
    "quarrel": ["does not want to share {pos} {thing}", "learns to share {pos} {thing}"],
    "broken_thing": ["breaks {pos} {thing}", "drops {pos} {thing} and breaks it"],
}
REQUESTS_WITH_PLOT = [
    "Write a story about {a_kind} named {name} who {act}.",
    "Can you write a short story where {name} the {kind} {act}?",
    "Tell me a story about {a_kind} called {name} who {act}.",
    "Please write a children's story: {name} is {a_kind} who {act}.",
]
REQUESTS = [
    "Write a story about {a_kind} named {name} and {a_thing}.",
    "Tell me a story about {name} the {kind} and {pos} {thing}.",
    "Can you write a short story with {a_kind} named {name} and {a_thing} in it?",
    "Write a short story. Main character: {name}, {a_kind}. It must have {a_thing} in it.",
]
QUESTION_PROMPTS = [
    "{story}\n\n{question}",
    "Read this story and answer the question.\n\n{story}\n\nQuestion: {question}",
    "Here is a story:\n\n{story}\n\n{question}",
    "Story:\n{story}\n\nAnswer briefly: {question}",
]
# the one word that says what happened in each plot; a summary of one plot must not use the others'
EVENT_WORDS = {"lost_thing": "lost", "stuck_in_tree": "stuck", "quarrel": "share", "broken_thing": "broke"}
FOLLOW_UPS = ["Now tell me what happened to the {thing}.", "What happened to the {thing} in the story?"]
SUMMARIES = {
    "lost_thing": "{name} lost {pos} {thing}. {friend} helped {obj} look, and they found it {spot}.",
    "stuck_in_tree": "The wind blew the {thing} into a tall tree, and it got stuck. Then it came down safe.",
    "quarrel": "{name} did not want to share the {thing} with {friend}. Then {pro} said sorry, and they took turns.",
    "broken_thing": "{name} dropped the {thing} and it broke. {Pos} {helper} helped fix it with {fix}.",
}


def _article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def is_heldout_cast(name: str, thing: str) -> bool:
    """Whether the (hero's name, object) pair belongs to the held-out split; fixed by a hash, the same on every run."""
    digest = hashlib.sha256(f"{name}|{thing}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % HELDOUT_SHARE == 0


def _pairs(split: str) -> list[tuple[str, str, str]]:
    """(name, pronoun, object) for every pair of the split."""
    heldout = split == "heldout"
    return [(name, pro, thing) for name, _, pro in W.CHARACTERS for thing, _ in W.OBJECTS
            if is_heldout_cast(name, thing) == heldout]


def _random_cast(rng: random.Random, pairs: list[tuple[str, str, str]]) -> StoryCast:
    name, pro, thing = rng.choice(pairs)
    # a kind whose words are not in the object's ("a bear" and "a teddy bear" would check each other)
    kinds = [k for k, pros in W.REQUEST_KINDS if pro in pros and not set(k.split()) & set(thing.split())]
    return StoryCast(name=name, kind=rng.choice(kinds), pronoun=pro, thing=thing)


def _story(rng: random.Random, cast: StoryCast, plot: str | None) -> Story:
    story = story_about(rng, cast, plot)
    missing = [w for w in (cast.name, cast.kind, cast.thing) if not mentions(story.text, w)]
    if missing:  # the promise every story_request makes; a template change that breaks it must fail loudly
        raise DataError(f"story about {cast} does not name {missing}: {story.text!r}")
    return story


def _slots(cast: StoryCast, **extra: str) -> dict:
    pos = _POSSESSIVE[cast.pronoun]
    return {"name": cast.name, "kind": cast.kind, "a_kind": _article(cast.kind), "thing": cast.thing,
            "a_thing": _article(cast.thing), "pos": pos, "Pos": pos.capitalize(), "pro": cast.pronoun,
            "obj": _OBJECT[cast.pronoun], **extra}


def _request(rng: random.Random, cast: StoryCast) -> tuple[str, str | None]:
    """(the user's request, the plot it asks for, None when it leaves the plot open)."""
    if rng.random() < 0.5:
        plot = rng.choice(OBJECT_PLOTS)
        act = rng.choice(ACTS[plot]).format(**_slots(cast))
        return rng.choice(REQUESTS_WITH_PLOT).format(**_slots(cast, act=act)), plot
    return rng.choice(REQUESTS).format(**_slots(cast)), None


def _spots(story: Story) -> tuple[str, list[str]]:
    """Where the lost thing was found, and the two places looked first (the distractors), as bare nouns."""
    looked = re.search(r"looked (.+?)\. \w+ looked (.+?)\. But the", story.text)
    found = re.search(r"Together they looked (.+?), and there it was!", story.text)
    if not (looked and found):
        raise DataError(f"lost-thing story without its search: {story.text!r}")

    def noun(spot: str) -> str:
        return re.sub(r"^(under|behind|in|next to) (the|a) ", "", spot)

    return found.group(1), [noun(looked.group(1)), noun(looked.group(2)), noun(found.group(1))]


def _questions(story: Story) -> list[tuple[str, list[str], str, list[str]]]:
    """(question, [reference answers], required item, distractors) that this story answers unambiguously."""
    c, friend, helper = story.cast, story.friend, story.helper
    s = _slots(c, friend=friend, helper=helper)
    name, thing = c.name, c.thing
    out = [(f"What was the {c.kind}'s name?", [f"{name}.", f"The {c.kind}'s name was {name}."], name, [friend]),
           (f"What is the name of the {c.kind}?", [f"{name}.", f"The {c.kind} is called {name}."], name, [friend])]
    if story.plot == "lost_thing":
        spot, (s0, s1, found) = _spots(story)
        out += [(f"What did {name} lose?", ["{Pos} {thing}.".format(**s), f"{name} lost the {thing}."], thing, []),
                (f"Who lost the {thing}?", [f"{name}.", f"{name} lost the {thing}."], name, [friend]),
                (f"Who helped {name} look for the {thing}?", [f"{friend}.", f"{friend} helped."], friend, [name]),
                (f"Where did they find the {thing}?", [f"{spot[:1].upper()}{spot[1:]}.", f"They found it {spot}."],
                 found, [s0, s1])]
    elif story.plot == "stuck_in_tree":
        out += [(f"Where did the {thing} get stuck?", ["In a tall tree.", f"The {thing} got stuck in a tree."], "tree", []),
                ("What got stuck in the tree?", [f"The {thing}.", f"{name}'s {thing}."], thing, []),
                (f"Whose {thing} got stuck in the tree?", [f"{name}'s.", f"It was {name}'s {thing}."], name, [friend])]
    elif story.plot == "quarrel":
        out += [(f"Who did not want to share the {thing}?", [f"{name}.", f"{name} did not want to share."], name, [friend]),
                (f"Who wanted to play with the {thing} too?", [f"{friend}.", f"{friend} wanted a turn."], friend, [name]),
                (f"What did {name} not want to share?", [f"The {thing}.", "{Pos} {thing}.".format(**s)], thing, [])]
    elif story.plot == "broken_thing":
        fix, other = ("glue", "tape") if "glue" in story.text else ("tape", "glue")
        out += [(f"What did {name} drop?", [f"The {thing}.", "{Pos} {thing}.".format(**s)], thing, []),
                (f"Who helped fix the {thing}?", ["{Pos} {helper}.".format(**s), f"The {helper} helped."], helper, []),
                (f"What did they fix the {thing} with?", [f"With {fix}.", f"They used {fix}."], fix, [other])]
    return out


def _question_check(kind: str, cast: StoryCast, reply: str, required: list[str], distractors: list[str]) -> dict:
    # a distractor the reference reply itself names cannot be held against an answer
    reject = [d for d in distractors if not mentions(reply, d) and not any(mentions(r, d) for r in required)]
    answer: str | list[str] = required[0] if len(required) == 1 else required
    return {"kind": kind, "answer": answer, "reject": reject, "cast": [cast.name, cast.thing]}


def _system(rng: random.Random) -> list[dict]:
    return [{"role": "system", "content": rng.choice(SYSTEMS)}] if rng.random() < 0.5 else []


def _request_turns(rng: random.Random, pairs: list) -> tuple[list[dict], Story]:
    """[system?, user request, assistant story] and the story told."""
    system, cast = _system(rng), _random_cast(rng, pairs)
    prompt, plot = _request(rng, cast)
    story = _story(rng, cast, plot)
    return [*system, {"role": "user", "content": prompt}, {"role": "assistant", "content": story.text}], story


def _story_request(rng: random.Random, pairs: list) -> dict:
    messages, story = _request_turns(rng, pairs)
    cast = story.cast
    check = {"kind": "story_request", "name": cast.name, "character": cast.kind, "object": cast.thing,
             "cast": [cast.name, cast.thing]}
    return {"messages": messages, "check": check}


def _story_question(rng: random.Random, pairs: list) -> dict:
    system, cast = _system(rng), _random_cast(rng, pairs)
    story = _story(rng, cast, None)
    question, replies, required, distractors = rng.choice(_questions(story))
    reply = rng.choice(replies)
    prompt = rng.choice(QUESTION_PROMPTS).format(story=story.text, question=question)
    messages = [*system, {"role": "user", "content": prompt}, {"role": "assistant", "content": reply}]
    return {"messages": messages, "check": _question_check("story_question", cast, reply, [required], distractors)}


def _summary(story: Story) -> tuple[str, list[str], list[str]]:
    """"What happened to the key?": (reply, required: the object and the plot's event word, the other plots' words)."""
    spot = _spots(story)[0] if story.plot == "lost_thing" else ""
    fix = "glue" if "glue" in story.text else "tape"
    reply = SUMMARIES[story.plot].format(**_slots(story.cast, friend=story.friend, helper=story.helper, spot=spot, fix=fix))
    others = [w for p, w in EVENT_WORDS.items() if p != story.plot]
    return reply, [story.cast.thing, EVENT_WORDS[story.plot]], others


def _multi_turn(rng: random.Random, pairs: list) -> dict:
    messages, story = _request_turns(rng, pairs)
    if rng.random() < 0.35:
        question = rng.choice(FOLLOW_UPS).format(thing=story.cast.thing)
        reply, required, distractors = _summary(story)
    else:
        question, replies, item, distractors = rng.choice(_questions(story))
        reply, required = rng.choice(replies), [item]
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]
    return {"messages": messages, "check": _question_check("multi_turn", story.cast, reply, required, distractors)}


_MAKERS = {"story_request": _story_request, "story_question": _story_question, "multi_turn": _multi_turn}


def generate_instruction_examples(n: int, seed: int = 0, kinds: Sequence[str] = KINDS, split: str = "train",
                                  max_words: int = MAX_WORDS) -> Iterator[dict]:
    """`n` chat examples of `kinds` in equal shares, the same ones for the same arguments; `split` is "train"
    or "heldout" (disjoint (name, object) pairs, see the module docstring)."""
    kinds = list(kinds)
    if not kinds or any(k not in KINDS for k in kinds):
        raise DataError(f"unknown example kinds {kinds}; choose from {', '.join(KINDS)}")
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; choose train or heldout")
    if max_words < MIN_MAX_WORDS:
        raise DataError(f"max_words {max_words} is too small; examples need at least {MIN_MAX_WORDS}")
    rng, pairs = random.Random(f"slmkit-sft-{split}-{seed}"), _pairs(split)
    order: list[str] = []
    for _ in range(n):
        if not order:  # each round holds every kind once, in a shuffled order
            order = rng.sample(kinds, len(kinds))
        yield _example(_MAKERS[order.pop()], rng, pairs, max_words)


def _words_in(example: dict) -> int:
    return sum(len(m["content"].split()) for m in example["messages"])


def _example(make, rng: random.Random, pairs: list, max_words: int) -> dict:
    for _ in range(1000):
        example = make(rng, pairs)
        if _words_in(example) <= max_words:
            return example
    raise DataError(f"no example within {max_words} words in 1000 draws; raise max_words (default {MAX_WORDS})")


def heldout_path(out: str | Path) -> Path:
    """data/sft.jsonl -> data/sft.heldout.jsonl (the held-out split is written beside the train file)."""
    out = Path(out)
    if out.suffix != ".jsonl":
        raise DataError(f"output {out} must end in .jsonl (e.g. data/sft.jsonl); the held-out split goes beside it")
    return out.with_name(out.stem + ".heldout.jsonl")


def write_instruction_files(out: str | Path, examples: int = 4000, heldout: int = 200, seed: int = 0,
                            max_words: int = MAX_WORDS) -> dict:
    """Write `examples` train examples to `out` and `heldout` held-out ones beside it (JSONL, each file atomically).
    Returns {"train": {"path", "counts": {kind: n}}, "heldout": {...}}."""
    if examples < 1:
        raise DataError(f"examples must be at least 1 (got {examples})")
    if heldout < 0:
        raise DataError(f"heldout must be 0 or more (got {heldout})")
    paths = {"train": Path(out), "heldout": heldout_path(out)}
    sizes = {"train": examples, "heldout": heldout}
    report = {}
    for split, path in paths.items():
        rows = list(generate_instruction_examples(sizes[split], seed=seed, split=split, max_words=max_words))
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(path) as tmp:
            tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        counts = Counter(r["check"]["kind"] for r in rows)
        report[split] = {"path": str(path), "counts": {k: counts[k] for k in KINDS}}
    return report
