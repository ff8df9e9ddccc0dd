"""Synthetic children's stories: a seedable, unlimited source of simple, plausible English.

Each story has a beginning (who, where, what they like), a problem (one of several plots:
a lost toy, a quarrel, a storm, a fright...), dialogue, a resolution and an ending. Word lists
live in synthetic_words.py. It is the offline default for the demo and the benchmarks.
`story_about` tells a story for a given cast (name, kind, object), for instruction data.

    from slmkit.data.sources.synthetic import StoryCast, generate_stories, story_about
    for story in generate_stories(3, seed=0): print(story)
    print(story_about(random.Random(0), StoryCast("Max", "cat", "he", "key")).text)
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from slmkit.data.sources import synthetic_words as W
from slmkit.errors import DataError

_OBJECT = {"he": "him", "she": "her", "it": "it"}
_POSSESSIVE = {"he": "his", "she": "her", "it": "its"}


def _cap(sentence: str) -> str:
    return sentence[:1].upper() + sentence[1:]


def _article(word: str) -> str:
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


@dataclass
class _Cast:
    """Who and what one story is about; the templates read their slots from here."""

    name: str
    kind: str
    pro: str
    friend: str
    friend_kind: str
    friend_pro: str
    helper: str
    place: str
    activity: str
    thing: str
    thing_adj: str
    good: str
    bad: str

    @property
    def Pro(self) -> str:  # noqa: N802 - sentence-initial pronoun
        return self.pro.capitalize()

    @property
    def obj(self) -> str:
        return _OBJECT[self.pro]

    @property
    def pos(self) -> str:
        return _POSSESSIVE[self.pro]

    @property
    def fpos(self) -> str:
        return _POSSESSIVE[self.friend_pro]

    @property
    def fobj(self) -> str:
        return _OBJECT[self.friend_pro]

    def fill(self, template: str, **extra: str) -> str:
        slots = {
            "name": self.name, "kind": self.kind, "Pro": self.Pro, "pro": self.pro, "obj": self.obj,
            "pos": self.pos, "friend": self.friend, "fpos": self.fpos, "fobj": self.fobj,
            "helper": self.helper, "helper_ref": f"{self.pos} {self.helper}", "place": self.place,
            "activity": self.activity, "thing": self.thing, "adj": self.thing_adj, "good": self.good,
            "bad": self.bad, "a_thing": _article(f"{self.thing_adj} {self.thing}"),
        }
        slots.update(extra)
        return template.format(**slots)


def _cast(rng: random.Random) -> _Cast:
    (name, kind, pro), (friend, friend_kind, friend_pro) = rng.sample(W.CHARACTERS, 2)
    place = rng.choice(list(W.PLACES))
    thing, adjectives = rng.choice(W.OBJECTS)
    return _Cast(
        name=name, kind=kind, pro=pro, friend=friend, friend_kind=friend_kind, friend_pro=friend_pro,
        helper=rng.choice(W.HELPERS), place=place, activity=rng.choice(W.PLACES[place]), thing=thing,
        thing_adj=rng.choice(adjectives), good=rng.choice(W.FEELINGS_GOOD), bad=rng.choice(W.FEELINGS_BAD),
    )


def _beginning(c: _Cast, rng: random.Random) -> list[str]:
    opening = rng.choice(W.OPENINGS).format(
        adj=rng.choice(W.CHARACTER_ADJECTIVES), kind=c.kind, name=c.name, Pro=c.Pro, place=c.place
    )
    likes = rng.choice([
        "{Pro} loved to go to the {place} and {activity}.",
        "Every day, {pro} went to the {place} to {activity}.",
        "{Pro} had {a_thing} that {pro} took everywhere.",
        "{Pro} liked to {activity} with {pos} friend {friend}, a {fk}.",
        "{name} and {pos} friend {friend} liked to {activity} at the {place}.",
    ])
    lines = [opening, c.fill(likes, fk=c.friend_kind)]
    if rng.random() < 0.6:
        lines.append(rng.choice(W.WEATHER))
    if rng.random() < 0.5:
        lines.append(c.fill(rng.choice([
            "One day, {name} went to the {place} with {pos} {adj} {thing}.",
            "One morning, {name} took {pos} {adj} {thing} to the {place}.",
            "That day, {name} and {friend} went to the {place} to {activity}.",
        ])))
    return lines


# --- problems: each returns the middle and the resolution of a story ---------------------------

def _lost_thing(c: _Cast, rng: random.Random) -> list[str]:
    spots = rng.sample(["under the bed", "behind the door", "in the toy box", "under a bush",
                        "next to the big tree", "in the tall grass", "under the table"], 3)
    return [
        c.fill("Then {name} wanted to play with {pos} {adj} {thing}, but it was gone!"),
        c.fill("{Pro} felt very {bad}. \"Where is my {thing}?\" {pro} asked."),
        c.fill("{Pro} looked {s0}. {Pro} looked {s1}. But the {thing} was not there.", s0=spots[0], s1=spots[1]),
        c.fill("{friend} came over and said, \"Don't worry, {name}. I will help you look.\""),
        c.fill("Together they looked {s2}, and there it was!", s2=spots[2]),
        c.fill("{name} was so {good}. \"Thank you, {friend}!\" {pro} said."),
    ]


def _stuck_in_tree(c: _Cast, rng: random.Random) -> list[str]:
    fix = rng.choice([
        "{helper_ref} came with a long ladder and climbed up to get it.",
        "{friend} had an idea. {friend} got a long stick and gently pushed the {thing} down.",
        "A kind bird flew up and pushed the {thing} with its beak until it fell down.",
    ])
    return [
        c.fill("Suddenly, a strong wind blew the {thing} up into a tall tree."),
        c.fill("{name} jumped and jumped, but the tree was too high. {Pro} could not reach it."),
        c.fill("\"Oh no! My {thing} is stuck!\" {pro} cried. {Pro} felt {bad}."),
        _cap(c.fill(fix)),
        c.fill("The {thing} was safe again. {name} smiled and felt {good}."),
    ]


def _quarrel(c: _Cast, rng: random.Random) -> list[str]:
    return [
        c.fill("{friend} saw the {adj} {thing} and asked, \"Can I play with it too?\""),
        c.fill("\"No! It is mine!\" said {name}, and {pro} held it tight."),
        c.fill("{friend} looked sad and walked away. {fpos_cap} eyes were wet.", fpos_cap=c.fpos.capitalize()),
        c.fill("Soon {name} felt {bad}. Playing alone was not fun."),
        c.fill(rng.choice([
            "{Pro} ran to {friend} and said, \"I am sorry. Let's play with my {thing} together.\"",
            "{Pro} went to {friend} and gave {fobj} the {thing}. \"You can have the first turn,\" {pro} said.",
        ])),
        c.fill("{friend} smiled. They took turns, and they both felt {good}."),
    ]


def _broken_thing(c: _Cast, rng: random.Random) -> list[str]:
    return [
        c.fill("But then {name} dropped {pos} {thing}, and it broke into two pieces."),
        c.fill("{name} started to cry. \"My {adj} {thing} is broken,\" {pro} said."),
        _cap(c.fill("{helper_ref} heard {obj} and came to help.")),
        c.fill(rng.choice([
            "\"Let's fix it with some glue,\" said the {helper}. They put the pieces back together.",
            "\"We can fix it with tape,\" said the {helper}. Soon the {thing} looked almost new.",
        ])),
        c.fill("{name} hugged the {helper}. \"Now my {thing} is good again!\" {pro} said."),
    ]


def _rain_storm(c: _Cast, rng: random.Random) -> list[str]:
    return [
        c.fill("Then dark clouds came, and big drops of rain began to fall."),
        c.fill("{name} and {friend} ran under a big tree, but they still got wet."),
        c.fill("\"I don't like the rain,\" said {name}. {Pro} felt {bad}."),
        c.fill(rng.choice([
            "{friend} said, \"Let's sing a song until the rain stops.\" So they sang and sang.",
            "{friend} said, \"Look at the puddles! We can jump in them.\" So they jumped and splashed.",
        ])),
        c.fill("Soon the rain stopped, and a big rainbow came out. {name} smiled and felt {good}."),
    ]


def _scary_noise(c: _Cast, rng: random.Random) -> list[str]:
    source = rng.choice(["a little puppy", "a baby owl", "a small squirrel", "the wind in the leaves", "a fat frog"])
    return [
        c.fill("While {pro} was playing at the {place}, {pro} heard a loud noise."),
        c.fill("\"What was that?\" {name} asked. {Pro} was very scared."),
        c.fill("{Pro} wanted to run home, but {pro} took a deep breath and looked around."),
        c.fill("It was only {src}! {name} laughed.", src=source),
        c.fill("\"You are not scary at all,\" {pro} said. {Pro} felt brave and {good}."),
    ]


def _lost_way(c: _Cast, rng: random.Random) -> list[str]:
    return [
        c.fill("{name} walked and walked, far away from home. Soon {pro} did not know where {pro} was."),
        c.fill("Everything looked big and strange. {name} felt {bad}."),
        c.fill("\"I want to go home,\" {pro} said quietly."),
        c.fill(rng.choice([
            "Then {pro} remembered what {pos} {helper} always said: \"Stay where you are, and I will find you.\"",
            "Then {pro} saw {friend}, who knew the way. \"Follow me,\" said {friend}.",
        ])),
        c.fill("Soon {pro} was home again, safe and warm. {name} felt {good}."),
    ]


def _friend_hurt(c: _Cast, rng: random.Random) -> list[str]:
    return [
        c.fill("While they played, {friend} fell down and hurt {fpos} knee."),
        c.fill("\"Ouch! It hurts,\" said {friend}, and {friend_pro} began to cry.", friend_pro=c.friend_pro),
        c.fill("{name} did not run away. {Pro} held {friend}'s hand and called {pos} {helper}."),
        c.fill("The {helper} cleaned the knee and put on a bandage."),
        c.fill("\"Thank you for helping me,\" said {friend}. {name} felt {good} to be a good friend."),
    ]


def _new_friend(c: _Cast, rng: random.Random) -> list[str]:
    return [
        c.fill("At the {place}, {name} saw {a_fk} sitting all alone.", a_fk=_article(c.friend_kind)),
        c.fill("The {fk} looked {bad}. Nobody was playing with {fobj}.", fk=c.friend_kind),
        c.fill("{name} walked over and said, \"Hi! I am {name}. Do you want to play with me?\""),
        c.fill("\"Yes, please! My name is {friend},\" said the {fk}.", fk=c.friend_kind),
        c.fill("They played all day, and {friend} was not alone anymore. Both of them were {good}."),
    ]


def _baking(c: _Cast, rng: random.Random) -> list[str]:
    treat = rng.choice(["a cake", "some cookies", "a pie", "some muffins"])
    return [
        c.fill("One day, {name} wanted to make {t} with {pos} {helper}.", t=treat),
        c.fill("{Pro} put in flour, milk and eggs. But {pro} put in salt instead of sugar!"),
        c.fill("When they tasted it, {name} made a funny face. \"Yuck!\" {pro} said. {Pro} felt {bad}."),
        c.fill("\"It is okay,\" said the {helper}. \"We can try again.\""),
        c.fill("This time they used sugar, and it was sweet and yummy. {name} was {good}."),
    ]


# each plot with the lessons that fit it
PROBLEMS: list[tuple[Callable[[_Cast, random.Random], list[str]], list[str]]] = [
    (_lost_thing, ["{name} learned that it is good to ask for help.",
                  "From then on, {name} put {pos} {thing} away after playing."]),
    (_stuck_in_tree, ["{name} learned to hold on tight on windy days.",
                     "{name} learned that it is good to ask for help."]),
    (_quarrel, ["From that day on, {name} always shared with friends.",
               "{name} learned that sharing makes playing more fun."]),
    (_broken_thing, ["{name} learned to be careful with {pos} toys.",
                    "{name} learned that broken things can often be fixed."]),
    (_rain_storm, ["{name} learned that even a rainy day can be fun.",
                  "And {name} knew that friends make bad days better."]),
    (_scary_noise, ["{name} learned that many scary things are not scary at all.",
                   "From then on, {name} was a little braver."]),
    (_lost_way, ["{name} learned to stay close to home.",
                "{name} learned to stay calm when things go wrong."]),
    (_friend_hurt, ["And {name} knew that friends help each other.",
                   "{name} learned that being kind makes everyone happy."]),
    (_new_friend, ["{name} learned that a kind word can make a new friend.",
                  "And {name} knew that nobody should be left alone."]),
    (_baking, ["{name} learned that it is okay to make mistakes.",
              "From then on, {name} was never afraid to try again."]),
]


def _ending(c: _Cast, rng: random.Random, morals: list[str]) -> list[str]:
    lines = [_cap(c.fill(rng.choice(W.ENDINGS)))]
    if rng.random() < 0.5:
        lines.append(c.fill(rng.choice(morals)))
    return lines


def _tell(c: _Cast, rng: random.Random, pick_plot: Callable[[], tuple]) -> tuple[str, str]:
    """(story text, plot name); the plot is picked after the beginning, as make_story always has."""
    beginning = _beginning(c, rng)
    plot, morals = pick_plot()
    middle = plot(c, rng)
    ending = _ending(c, rng, morals)
    split = rng.randint(2, len(middle) - 1)  # a paragraph break somewhere in the middle
    paragraphs = [beginning, middle[:split], middle[split:] + ending]
    return "\n\n".join(" ".join(p) for p in paragraphs), plot.__name__.lstrip("_")


def make_story(rng: random.Random) -> str:
    """One story: a beginning, a problem with its resolution, an ending; paragraphs split by blank lines."""
    return _tell(_cast(rng), rng, lambda: rng.choice(PROBLEMS))[0]


# --- stories for a requested cast (instruction data) -------------------------------------------

PLOTS = {plot.__name__.lstrip("_"): (plot, morals) for plot, morals in PROBLEMS}
# The plots whose text always names the object (the others may never mention it).
OBJECT_PLOTS = ("lost_thing", "stuck_in_tree", "quarrel", "broken_thing")


@dataclass(frozen=True)
class StoryCast:
    """Who a requested story is about: "a cat named Max" with pronoun "he", and the object ("key")."""

    name: str
    kind: str
    pronoun: str
    thing: str


@dataclass(frozen=True)
class Story:
    """A told story and the facts questions about it can ask: the friend, the helper, the plot."""

    text: str
    cast: StoryCast
    friend: str
    helper: str
    plot: str


def _cast_for(want: StoryCast, rng: random.Random) -> _Cast:
    kind_words = set(want.kind.split())
    # a friend whose name and kind cannot be mistaken for the requested one ("the girl" stays one girl)
    friends = [f for f in W.CHARACTERS if f[0] != want.name and not kind_words & set(f[1].split())]
    friend, friend_kind, friend_pro = rng.choice(friends)
    place = rng.choice(list(W.PLACES))
    return _Cast(
        name=want.name, kind=want.kind, pro=want.pronoun, friend=friend, friend_kind=friend_kind,
        friend_pro=friend_pro, helper=rng.choice(W.HELPERS), place=place, activity=rng.choice(W.PLACES[place]),
        thing=want.thing, thing_adj=rng.choice(dict(W.OBJECTS)[want.thing]), good=rng.choice(W.FEELINGS_GOOD),
        bad=rng.choice(W.FEELINGS_BAD),
    )


def story_about(rng: random.Random, cast: StoryCast, plot: str | None = None) -> Story:
    """A story whose text names `cast`'s name, kind and object; `plot` is one of OBJECT_PLOTS (None: any)."""
    if cast.pronoun not in _OBJECT or cast.thing not in dict(W.OBJECTS):
        raise DataError(f"cannot tell a story about {cast}: pronoun must be he/she/it and the object one of OBJECTS")
    if plot is not None and plot not in OBJECT_PLOTS:
        raise DataError(f"unknown plot {plot!r}; choose one of {', '.join(OBJECT_PLOTS)}")
    c = _cast_for(cast, rng)
    text, told = _tell(c, rng, lambda: PLOTS[plot or rng.choice(OBJECT_PLOTS)])
    return Story(text=text, cast=cast, friend=c.friend, helper=c.helper, plot=told)


def generate_stories(n: int | None, seed: int) -> Iterator[str]:
    """`n` stories (None: without end), the same ones for the same seed."""
    rng = random.Random(seed)
    counter = itertools.count() if n is None else range(n)
    for _ in counter:
        yield make_story(rng)
