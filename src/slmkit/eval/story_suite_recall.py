"""The story suite's `fact_recall` documents: a fact stated once, one or two sentences that do not repeat
it, then a sentence whose next word is that fact.

    Lily had a red ball. She played with it every day. She took it everywhere she went. The ball was
    -> red | blue | green | pink

The right answer is the only choice the story mentions (an oracle that reads the story scores 100%);
the distractors come from the same pool and are never mentioned, so the final sentence's local context
says nothing about which is right: a model has to carry the fact across sentences, which an n-gram
cannot. Six templates: a toy's colour, a lost toy's owner, where a child went, a pet's name, a birthday
present, a new friend's name.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from slmkit.eval.story_suite_words import (
    CHILDREN, COLORED_TOYS, COLORS, HELPERS, PET_NAMES, PETS, PLACES, TOYS, place_gold, unmentioned, with_article,
)

CHOICES = 4
NAMES = [c.name for c in CHILDREN]

# Sentences between the fact and the question: about the child, never naming a pool entry.
TOY_FILLERS = ["{Pro} played with it every day.", "{Pro} took it everywhere {pro} went.",
               "{Pro} liked it more than any other toy.", "{Pos} friends liked it too.",
               "One day, {pro} went outside to play with it."]
TRIP_FILLERS = ["They stayed there all day.", "{Pro} ran and played until {pro} was tired.",
                "{Pro} laughed a lot that day.", "When the sun went down, they walked back home."]
PET_FILLERS = ["Every morning, {pro} gave the {pet} some food.", "The {pet} liked to sleep in the sun.",
               "They played together every day.", "At night, the {pet} slept next to {pos} bed."]
GIFT_FILLERS = ["{Pro} said thank you and gave {pos} {helper} a big hug.", "{Pro} played with it all day long.",
                "It was the best present ever."]
FRIEND_FILLERS = ["They played on the grass and laughed a lot.", "They shared a snack and told funny stories.",
                  "When the sun went down, it was time to go home."]
FINDERS = ["man", "lady", "old man", "old lady"]

# A template returns (the story up to the blank, the right answer, the pool its distractors come from).
Recall = tuple[str, str, list[str]]


def _fillers(rng: random.Random, fillers: list[str], **slots: str) -> str:
    """One or two of `fillers`, filled, in the order written (the lists are in story order)."""
    picked = sorted(rng.sample(range(len(fillers)), rng.randint(1, 2)))
    return " ".join(fillers[i].format(**slots) for i in picked)


def _toy_color(rng: random.Random) -> Recall:
    child, toy, color = rng.choice(CHILDREN), rng.choice(COLORED_TOYS), rng.choice(COLORS)
    story = f"{child.name} had {with_article(f'{color} {toy}')}. {_fillers(rng, TOY_FILLERS, **child.slots())}"
    return f"{story} The {toy} was", color, COLORS


def _toy_owner(rng: random.Random) -> Recall:
    child, toy, place = rng.choice(CHILDREN), rng.choice(TOYS), rng.choice(PLACES)
    story = (f"{child.name} had a new {toy}. {_fillers(rng, TOY_FILLERS[:4], **child.slots())} "
             f"One day, {child.pro} lost it on the way to the {place}.")
    # distractors of the same gender: the pronouns say nothing about who the owner is
    same_gender = [c.name for c in CHILDREN if c.pro == child.pro]
    return f"{story} A kind {rng.choice(FINDERS)} found the {toy} and gave it back to", child.name, same_gender


def _trip_place(rng: random.Random) -> Recall:
    child, place, helper = rng.choice(CHILDREN), rng.choice(PLACES), rng.choice(HELPERS)
    story = f"{child.name} went to the {place} with {child.pos} {helper}. {_fillers(rng, TRIP_FILLERS, **child.slots())}"
    return f"{story} {child.name} had so much fun at the", place, PLACES


def _pet_name(rng: random.Random) -> Recall:
    child, pet, pet_name = rng.choice(CHILDREN), rng.choice(PETS), rng.choice(PET_NAMES)
    story = (f"{child.name} had a pet {pet} named {pet_name}. "
             f"{_fillers(rng, PET_FILLERS, pet=pet, **child.slots())}")
    return f"{story} {child.name} loved {child.pos} {pet} very much. The {pet}'s name was", pet_name, PET_NAMES


def _birthday_toy(rng: random.Random) -> Recall:
    child, toy, helper = rng.choice(CHILDREN), rng.choice(TOYS), rng.choice(HELPERS)
    story = (f"{child.name}'s {helper} gave {child.obj} {with_article(toy)} for {child.pos} birthday. "
             f"{_fillers(rng, GIFT_FILLERS, helper=helper, **child.slots())}")
    return f"{story} That night, {child.name} went to sleep next to {child.pos} new", toy, TOYS


def _new_friend(rng: random.Random) -> Recall:
    child, friend = rng.sample(CHILDREN, 2)
    story = (f"{child.name} went to the {rng.choice(PLACES)} and met a new friend named {friend.name}. "
             f"{_fillers(rng, FRIEND_FILLERS)}")
    return f"{story} {child.name} waved goodbye to", friend.name, NAMES


TEMPLATES: dict[str, Callable[[random.Random], Recall]] = {
    "toy_color": _toy_color, "toy_owner": _toy_owner, "trip_place": _trip_place, "pet_name": _pet_name,
    "birthday_toy": _birthday_toy, "new_friend": _new_friend,
}


def recall_document(rng: random.Random, template: str) -> dict:
    """One fact_recall document of `template` (a key of TEMPLATES)."""
    query, answer, pool = TEMPLATES[template](rng)
    distractors = rng.sample(unmentioned(pool, query), CHOICES - 1)
    choices, gold = place_gold(rng, answer, distractors)
    return {"query": query, "choices": choices, "gold": gold, "subtask": "fact_recall", "kind": "recall",
            "template": template}
