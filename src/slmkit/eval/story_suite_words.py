"""Word pools and small helpers shared by the story suite's generators (story_suite.py).

The pools are plain TinyStories English, drawn from the synthetic story generator's lists
(slmkit.data.sources.synthetic_words) where those fit, so the suite reads naturally to a model trained
on either the synthetic stories or real TinyStories. Every pool's entries are interchangeable in the
slots they fill: a generator draws the right answer and its distractors from the same pool, so no
entry is more often right than wrong.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from slmkit.data.sources import synthetic_words as W

_OBJECT = {"he": "him", "she": "her"}
_POSSESSIVE = {"he": "his", "she": "her"}
_OTHER = {"he": "she", "she": "he"}


@dataclass(frozen=True)
class Character:
    """A named child of the stories, with the pronoun the stories use for them."""

    name: str
    pro: str  # "he" | "she"

    @property
    def obj(self) -> str:
        return _OBJECT[self.pro]

    @property
    def pos(self) -> str:
        return _POSSESSIVE[self.pro]

    def slots(self, prefix: str = "") -> dict[str, str]:
        """Template slots for this character: name, pro, Pro, obj, pos, Pos (each after `prefix`)."""
        return {f"{prefix}name": self.name, f"{prefix}pro": self.pro, f"{prefix}Pro": self.pro.capitalize(),
                f"{prefix}obj": self.obj, f"{prefix}pos": self.pos, f"{prefix}Pos": self.pos.capitalize()}


def other_pronoun(pro: str) -> str:
    """'she' for 'he' and the other way round."""
    return _OTHER[pro]


# The children of the synthetic stories (the animals are left for pets): 8 girls, 7 boys.
CHILDREN = [Character(name, pro) for name, kind, pro in W.CHARACTERS if kind.split()[-1] in ("girl", "boy")]
# Pets' names: the synthetic stories' animal characters, given to any kind of pet.
PET_NAMES = [name for name, kind, _ in W.CHARACTERS if kind.split()[-1] not in ("girl", "boy")]
PETS = ["dog", "cat", "bunny", "bird", "fish", "turtle", "frog", "mouse", "puppy", "kitten"]
# Toys a child plays with, takes places and loses.
TOYS = ["ball", "kite", "doll", "teddy bear", "toy car", "balloon", "boat", "drum", "train", "puzzle", "bike",
        "book"]
# Toys that come in any colour, for "a red kite".
COLORED_TOYS = ["ball", "kite", "hat", "balloon", "toy car", "bike", "boat", "scarf", "bucket", "crayon"]
COLORS = ["red", "blue", "green", "yellow", "pink", "purple", "brown", "orange"]
# Outdoor places of the synthetic stories (not the kitchen, backyard or school), and the zoo.
PLACES = [p for p in W.PLACES if p not in ("kitchen", "backyard", "school")] + ["zoo"]
HELPERS = ["mom", "dad", "grandma", "grandpa"]
# Feelings of one valence each: the story cloze's "right emotion after the event".
FEELINGS = {"good": ["happy", "glad"], "bad": ["sad", "upset"]}


def with_article(phrase: str) -> str:
    """'a red ball', 'an orange kite'."""
    return ("an " if phrase[0].lower() in "aeiou" else "a ") + phrase


def plural(noun: str) -> str:
    """The plural of a pool noun: 'bunny' -> 'bunnies', 'peach' -> 'peaches', 'fish' -> 'fish'."""
    if noun in ("fish", "sheep"):
        return noun
    if noun.endswith("y") and noun[-2] not in "aeiou":
        return noun[:-1] + "ies"
    if noun.endswith(("ch", "sh", "s", "x")):
        return noun + "es"
    return noun + "s"


def mentions(text: str, word: str) -> bool:
    """Whether `word` (one or more words) occurs in `text` as whole words, ignoring case."""
    return re.search(rf"\b{re.escape(word)}\b", text, flags=re.IGNORECASE) is not None


def place_gold(rng: random.Random, gold: str, distractors: list[str]) -> tuple[list[str], int]:
    """The choices with the right one at a uniformly random position: (choices, gold index)."""
    position = rng.randrange(len(distractors) + 1)
    choices = list(distractors)
    choices.insert(position, gold)
    return choices, position


def unmentioned(pool: list[str], text: str, exclude: tuple[str, ...] = ()) -> list[str]:
    """The entries of `pool` that `text` never mentions, less `exclude`, in pool order."""
    return [entry for entry in pool if entry not in exclude and not mentions(text, entry)]
