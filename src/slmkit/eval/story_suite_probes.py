"""The story suite's `probes`: the TinyStories paper's knowledge, reasoning and consistency (context
tracking) probes (Eldan & Li 2023, sec. 4.2) as multiple choice, hand-written here and varied by
names, pronouns and pool words.

A probe's query and choices are templates; its first choice is the right one. Slots: {name} {friend}
{n3} {n4} are four different children; {pro} {Pro} {obj} {pos} {Pos} the first one's pronouns, {opos}
the other gender's possessive; with a `pool`, {x} {y} {z} {w} are four different words of that pool,
{xs} their plurals, {a_x} with their article.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from slmkit.eval.story_suite_words import (
    CHILDREN, COLORS, PET_NAMES, TOYS, Character, other_pronoun, place_gold, plural, with_article,
)

POOLS = {
    "pets": ["cat", "dog", "bird", "fish", "bunny", "frog", "turtle", "pony"],
    "fruits": ["apple", "banana", "orange", "pear", "peach", "plum"],
    "places": ["park", "beach", "zoo", "farm", "lake", "swimming pool", "playground", "garden"],
    "foods": ["cake", "pie", "soup", "pizza", "ice cream", "pancakes", "candy"],
    "toys": TOYS,
    "countables": ["apple", "cookie", "ball", "flower", "crayon", "sticker"],
    "crafts": ["card", "picture", "drawing", "necklace", "cake", "hat"],
    "colors": COLORS,
    "pet_names": PET_NAMES,
}


@dataclass(frozen=True)
class Probe:
    """One hand-written probe: `choices[0]` is right; `pool` names the POOLS entry {x}.. draw from."""

    name: str
    kind: str  # knowledge | reasoning | consistency
    query: str
    choices: tuple[str, ...]
    pool: str | None = None


def _p(name: str, kind: str, query: str, *choices: str, pool: str | None = None) -> Probe:
    return Probe(name, kind, query, choices, pool)


K, R, C = "knowledge", "reasoning", "consistency"
PROBES = [
    # knowledge: what every story-reader knows about the world
    _p("tired", K, "{name} was so tired when {pro} got back home, so {pro} went",
       "to bed", "to the moon", "up a tall tree", "for a long swim"),
    _p("rainbow", K, "{name} and {friend} saw a rainbow after a rainy day. The rainbow had many",
       "colors", "legs", "teeth", "wheels"),
    _p("night_sky", K, "{name} looked up at the night sky and saw the moon and the",
       "stars", "fish", "cars", "shoes"),
    _p("read_book", K, "{name} wanted to read a book, so {pro} went to the",
       "library", "pool", "bathtub", "car wash"),
    _p("cows_fly", K, '"Can cows fly?" {name} asked {pos} mom. "No," said {pos} mom. "Cows do not have',
       "wings", "ears", "legs", "tails"),
    _p("birds_eat", K, '"What do birds like to eat?" {name} asked {pos} dad. "Birds like to eat',
       "seeds and worms", "rocks and sand", "cars and trucks", "shoes and socks"),
    _p("france", K, '"What language do they speak in France?" {name} asked {pos} mom. "In France, people speak',
       "French", "Spanish", "Chinese", "German"),
    _p("throw_ball", K, "If {name} throws a ball up in the air, eventually it will",
       "come down", "turn into a bird", "stay there forever", "fly to the moon"),
    _p("winter", K, 'It was winter and cold outside, so {name}\'s mom told {obj}, "You should put on your',
       "warm coat", "swim suit", "flip flops", "sunglasses"),
    _p("ice_cream_sun", K, "{name} left {pos} ice cream in the hot sun, and soon it",
       "melted", "froze", "grew", "sang"),
    _p("fish_live", K, "{name} saw a fish in the pond. Fish live in the",
       "water", "sky", "trees", "sand"),
    _p("seed", K, "{name} planted a seed and gave it water every day. Soon it grew into a",
       "flower", "car", "cloud", "shoe"),
    _p("sand_castle", K, "{name} went to the beach and made a castle out of",
       "sand", "milk", "paper", "soup"),
    _p("dog_says", K, "{name} heard a dog outside. The dog said,",
       '"Woof!"', '"Moo!"', '"Meow!"', '"Quack!"'),
    _p("umbrella", K, "When it rains, {name} holds an umbrella to stay",
       "dry", "wet", "hot", "loud"),
    # reasoning: one step from what the story says to what follows
    _p("pet_instead", R, "{name} likes {xs} and {ys}. {Pro} asked {pos} mom for a {y}, but {pos} mom said no. "
       "So instead, {pro} asked for a", "{x}", "{y}", "{z}", "{w}", pool="pets"),
    _p("fruit_swap", R, "{name} had {a_x} and {friend} had {a_y}. They traded, so now {name} had the",
       "{y}", "{x}", "{z}", "{w}", pool="fruits"),
    _p("weekend", R, "On school days, {name} goes to school. On weekends, {pro} visits {pos} grandma. "
       "Today is Saturday, so {name} will", "visit {pos} grandma", "go to school", "fly to the moon", "sleep in a tree"),
    _p("choose_place", R, '{name} and {friend} had to choose between the {x} and the {y}. {friend} said, '
       '"I want to go to the {x}." {name} said, "No, I want to go to the', "{y}", "{x}", "{z}", "{w}", pool="places"),
    _p("asked_first", R, '{name} wanted {x} and {friend} wanted {y}. Mom said, "{friend} asked first, so today '
       'we will have {y}." That night, they all ate', "{y}", "{x}", "{z}", "{w}", pool="foods"),
    _p("give_one", R, "{name} had two {xs}. {Pro} gave one to {friend}. Now {name} has",
       "one {x}", "two {xs}", "three {xs}", "no {xs}", pool="countables"),
    _p("heavy_box", R, "The box was too heavy for {name} to lift alone, so {pro} asked {friend} to",
       "help {obj}", "eat it", "sing a song", "go to sleep"),
    _p("rainy_inside", R, "{name} wanted to play outside, but it was raining hard. So {pro} stayed inside and",
       "played with {pos} toys", "swam in the lake", "flew {pos} kite", "rode {pos} bike in the park"),
    _p("found_toy", R, "{name} lost {pos} {x} at the park and felt sad. Then {friend} found the {x} and gave it "
       "back. Now {name} felt", "happy", "sad", "angry", "scared", pool="toys"),
    _p("high_shelf", R, "The cookie jar was on a high shelf. {name} could not reach it, so {pro} stood on a",
       "chair", "cloud", "fish", "cake"),
    _p("race", R, "{name} ran faster than {friend}, so {name} won the race. {friend} came in",
       "second", "first"),
    _p("ate_cookies", R, "{name} ate all the cookies in the jar. Now the jar was",
       "empty", "full", "hungry", "singing"),
    _p("dropped_ice_cream", R, "{name} dropped {pos} ice cream on the ground and could not eat it, so {pro} felt",
       "sad", "happy", "full", "proud"),
    _p("locked_door", R, "The door was locked. {name} could not open it because {pro} did not have the",
       "key", "ball", "cake", "hat"),
    # consistency: keep track of who has what, where, and who "she" is
    _p("toy_box", C, "{name} put {pos} {x} in the box. Later, {pro} opened the box and took out {pos}",
       "{x}", "{y}", "{z}", "{w}", pool="toys"),
    _p("friend_toy", C, '{friend} had a {x}. {name} asked {friend}, "Can I play with your',
       "{x}", "{y}", "{z}", "{w}", pool="toys"),
    _p("throw_back", C, "{name} threw the ball to {friend}. {friend} caught it and threw it back to",
       "{name}", "{friend}", "{n3}", "{n4}"),
    _p("hat_scarf", C, "{name} had a {x} hat and a {y} scarf. It was cold, so {pro} put on the {x}",
       "hat", "scarf", "shoe", "coat", pool="colors"),
    _p("made_for_mom", C, "{name} made {a_x} for {pos} mom. {Pos} mom loved the",
       "{x}", "{y}", "{z}", "{w}", pool="crafts"),
    _p("brushed", C, "{name} woke up early. {Pro} jumped out of bed and brushed",
       "{pos} teeth", "{opos} teeth"),
    _p("gave_away", C, "{name} had a {x}. {Pro} gave it to {friend}. Now the {x} belongs to",
       "{friend}", "{name}", "{n3}", "{n4}", pool="toys"),
    _p("fun_at", C, "{name} went to the {x} with {pos} dad. They had a lot of fun at the",
       "{x}", "{y}", "{z}", "{w}", pool="places"),
    _p("hungry", C, '{name} said to {friend}, "I am so hungry!" So {friend} gave {name} an apple, because {name} was',
       "hungry", "tired", "cold", "sleepy"),
    _p("pet_ran_away", C, "{name} has a dog named {x}. Every day, {name} takes {x} for a walk. One day, {x} ran "
       "away, and {name} looked everywhere for", "{x}", "{y}", "{z}", "{w}", pool="pet_names"),
    _p("balloon_ball", C, "{name} had a {x} balloon and a {y} ball. The ball was",
       "{y}", "{x}", "{z}", "{w}", pool="colors"),
    _p("rain_clothes", C, "{name} was playing in the garden when it started to rain. {Pro} ran inside, and {pos} "
       "clothes were", "wet", "dry", "hot", "new"),
    _p("tower", C, "{name} was building a tower with blocks. {friend} bumped into it, and the tower",
       "fell down", "grew taller", "sang a song", "ran away"),
    _p("hide_seek", C, "{name} and {friend} played hide and seek. {friend} hid behind a tree. {name} counted "
       "to ten and then looked for", "{friend}", "{name}", "{n3}", "{n4}"),
]


def _slots(rng: random.Random, probe: Probe) -> dict[str, str]:
    """Fresh children (and pool words, when the probe has a pool) for one expansion of `probe`."""
    hero, friend, third, fourth = rng.sample(CHILDREN, 4)
    slots = {**hero.slots(), "friend": friend.name, "n3": third.name, "n4": fourth.name,
             "opos": Character(hero.name, other_pronoun(hero.pro)).pos}
    if probe.pool is not None:
        for key, word in zip("xyzw", rng.sample(POOLS[probe.pool], 4)):
            slots[key], slots[f"{key}s"], slots[f"a_{key}"] = word, plural(word), with_article(word)
    return slots


def probe_document(rng: random.Random, probe: Probe) -> dict:
    """One expansion of `probe`: its templates filled with fresh names (and pool words), the choices
    shuffled so the right one's position is uniform."""
    slots = _slots(rng, probe)
    right, *wrong = [choice.format(**slots) for choice in probe.choices]
    choices, gold = place_gold(rng, right, rng.sample(wrong, len(wrong)))
    return {"query": probe.query.format(**slots), "choices": choices, "gold": gold, "subtask": "probes",
            "kind": probe.kind, "template": probe.name}
