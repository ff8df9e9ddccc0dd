"""The story suite's `story_cloze` documents: a 3-4 sentence story and four candidate last sentences.

Each story frame has an ending with two slots (who, what, where, which pronoun, how they felt), and each
slot a right value (what the story says) and a wrong one (what contradicts it). The four choices are
the 2 x 2 combinations, so exactly one is right, every slot value appears in exactly two choices (the
right ending is not the one sharing most words with the others), all four have the same shape and
nearly the same length, and the gold position is uniform after shuffling:

    Lily and Tom went to play at the park. Lily brought her kite, and Tom brought his ball. Tom played
    with the ball, but Lily could not find the kite. Tom helped Lily look, and they found it under a bush.
    -> Lily was glad to have her kite back. | Lily ... her ball back. | Tom ... his kite back. | Tom ... his ball back.

Where a wrong value is another of the story's characters, toys or places, the story mentions both
values equally often, so counting mentions does not find the answer either. The right values are
drawn from the same pools as the wrong ones, so an n-gram's taste for a word is no hint.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from slmkit.eval.story_suite_words import (
    CHILDREN, FEELINGS, HELPERS, PLACES, TOYS, Character, other_pronoun, with_article,
)

FOUND_THINGS = ["a shiny rock", "a pretty shell", "a little key", "a big feather", "an old coin", "a tiny frog"]
# What happens on a day out, by the feeling it leaves (the frames' "event").
DAY_EVENTS = {
    "good": ["{Pro} saw a big rainbow in the sky.", "{Pro} made a new friend, and they played all day.",
             "{Pos} {helper} bought {obj} a big ice cream.", "{Pro} found a pretty shell and kept it."],
    "bad": ["{Pro} fell down and hurt {pos} knee.", "It started to rain, and {pro} got wet and cold.",
            "{Pro} lost {pos} favorite hat and could not find it.", "A big dog barked at {obj}, and {pro} cried."],
}
TOY_EVENTS = {
    "good": ["{Pro} took it to the {place}, and all {pos} friends wanted to play with it.",
             "It was the best toy {pro} ever had, and {pro} played with it every day."],
    "bad": ["The next day, {pro} dropped it, and it broke into many pieces.",
            "The next day, the wind took it away, and {pro} never saw it again."],
}


@dataclass(frozen=True)
class Slot:
    """One varying part of an ending: `kind` (name, object, place, pronoun, feeling), the word that is right
    and the one that is wrong, and the template fields each fills in."""

    kind: str
    right: str
    wrong: str
    right_fields: dict
    wrong_fields: dict


@dataclass(frozen=True)
class Frame:
    """A story, its ending template and the ending's two slots; `facts` are what an oracle checks
    besides the slots (e.g. the event's valence)."""

    story: list[str]
    ending: str
    slots: tuple[Slot, Slot]
    facts: dict


def _name_slot(right: Character, wrong: Character) -> Slot:
    return Slot("name", right.name, wrong.name, right.slots(), wrong.slots())


def _word_slot(kind: str, field: str, right: str, wrong: str) -> Slot:
    return Slot(kind, right, wrong, {field: right}, {field: wrong})


def _feeling_slot(rng: random.Random, valence: str) -> Slot:
    opposite = "bad" if valence == "good" else "good"
    return _word_slot("feeling", "feeling", rng.choice(FEELINGS[valence]), rng.choice(FEELINGS[opposite]))


def _lost_toy(rng: random.Random) -> Frame:
    """Who found which toy: both characters and both toys are mentioned equally often."""
    a, b = rng.sample(CHILDREN, 2)
    toy_a, toy_b = rng.sample(TOYS, 2)
    story = [f"{a.name} and {b.name} went to play at the {rng.choice(PLACES)}.",
             f"{a.name} brought {a.pos} {toy_a}, and {b.name} brought {b.pos} {toy_b}.",
             f"{b.name} played with the {toy_b}, but {a.name} could not find the {toy_a}.",
             f"{b.name} helped {a.name} look, and they found it under a bush."]
    ending = "{name} was " + rng.choice(FEELINGS["good"]) + " to have {pos} {toy} back."
    return Frame(story, ending, (_name_slot(a, b), _word_slot("object", "toy", toy_a, toy_b)), {})


def _two_places(rng: random.Random) -> Frame:
    """Who found something where: both characters and both places are mentioned equally often."""
    a, b = rng.sample(CHILDREN, 2)
    place_a, place_b = rng.sample(PLACES, 2)
    story = [f"On Saturday, {a.name} went to the {place_a}, and {b.name} went to the {place_b}.",
             f"At the {place_a}, {a.name} found {rng.choice(FOUND_THINGS)}.",
             f"At the {place_b}, {b.name} looked for a long time but found nothing."]
    ending = "{name} showed everyone what {pro} found at the {place}."
    return Frame(story, ending, (_name_slot(a, b), _word_slot("place", "place", place_a, place_b)), {})


def _only_toy(rng: random.Random) -> Frame:
    """Which pronoun and which toy: one child, who lost one of two toys."""
    child = rng.choice(CHILDREN)
    kept, lost = rng.sample(TOYS, 2)
    kind = "girl" if child.pro == "she" else "boy"
    # no grown-up in this story: the wrong pronoun can refer to nobody
    story = [f"There was a little {kind} named {child.name}.",
             f"{child.pro.capitalize()} had {with_article(kept)} and {with_article(lost)}.",
             f"One day, {child.pro} lost the {lost}, so {child.pro} could only play with the {kept}.",
             f"Every day, {child.pro} took it to the {rng.choice(PLACES)}."]
    wrong = Character(child.name, other_pronoun(child.pro))
    pronoun = Slot("pronoun", child.pro, wrong.pro, child.slots(), wrong.slots())
    ending = "{Pro} played with {pos} {toy} until it was time to go home."
    return Frame(story, ending, (pronoun, _word_slot("object", "toy", kept, lost)), {})


def _day_out(rng: random.Random) -> Frame:
    """Where the child was and how the day left them: a place never mentioned, the opposite feeling."""
    child, helper = rng.choice(CHILDREN), rng.choice(HELPERS)
    place, elsewhere = rng.sample(PLACES, 2)
    valence = rng.choice(["good", "bad"])
    event = rng.choice(DAY_EVENTS[valence]).format(helper=helper, **child.slots())
    story = [f"{child.name} went to the {place} with {child.pos} {helper}.", event, "Then it was time to go home."]
    ending = child.name + " left the {place} feeling very {feeling}."
    return Frame(story, ending, (_word_slot("place", "place", place, elsewhere), _feeling_slot(rng, valence)),
                 {"valence": valence})


def _toy_event(rng: random.Random) -> Frame:
    """What happened to a present and how the child felt: a toy never mentioned, the opposite feeling."""
    child, helper = rng.choice(CHILDREN), rng.choice(HELPERS)
    toy, other = rng.sample(TOYS, 2)
    valence = rng.choice(["good", "bad"])
    event = rng.choice(TOY_EVENTS[valence]).format(place=rng.choice(PLACES), **child.slots())
    story = [f"{child.name} got {with_article(toy)} from {child.pos} {helper}.",
             f"{child.pro.capitalize()} said thank you and gave {child.pos} {helper} a hug.", event]
    ending = child.name + " felt {feeling} when " + child.pro + " thought about the {toy}."
    return Frame(story, ending, (_word_slot("object", "toy", toy, other), _feeling_slot(rng, valence)),
                 {"valence": valence})


FRAMES: dict[str, Callable[[random.Random], Frame]] = {
    "lost_toy": _lost_toy, "two_places": _two_places, "only_toy": _only_toy, "day_out": _day_out,
    "toy_event": _toy_event,
}


def cloze_document(rng: random.Random, frame_name: str) -> dict:
    """One story_cloze document of `frame_name` (a key of FRAMES). Besides query/choices/gold it carries
    `facts` (each slot's right word, and the event's valence where there is one) and `contradictions`
    (each slot's wrong word), which an oracle can check the choices against."""
    frame = FRAMES[frame_name](rng)
    first, second = frame.slots
    endings = [frame.ending.format(**a, **b) for a in (first.right_fields, first.wrong_fields)
               for b in (second.right_fields, second.wrong_fields)]
    order = list(range(len(endings)))
    rng.shuffle(order)  # endings[0] is the right one
    return {"query": " ".join(frame.story), "choices": [endings[i] for i in order], "gold": order.index(0),
            "subtask": "story_cloze", "kind": "consistency", "template": frame_name,
            "facts": {first.kind: first.right, second.kind: second.right, **frame.facts},
            "contradictions": {first.kind: first.wrong, second.kind: second.wrong}}
