import re
from collections import Counter

from slmkit.data.sources.synthetic import PROBLEMS, generate_stories


def test_same_seed_same_stories_other_seed_other_stories():
    assert list(generate_stories(50, seed=7)) == list(generate_stories(50, seed=7))
    assert set(generate_stories(50, seed=7)).isdisjoint(generate_stories(50, seed=8))


def test_unlimited_when_n_is_none():
    stream = generate_stories(None, seed=0)
    assert len([next(stream) for _ in range(3000)]) == 3000


def test_varied_vocabulary_plots_and_no_repeats():
    stories = list(generate_stories(2000, seed=1))
    assert len(set(stories)) == len(stories)
    words = Counter(w.lower() for s in stories for w in re.findall(r"[A-Za-z']+", s))
    assert 300 <= len(words) <= 1500  # "a few hundred words"
    # every plot shows up: each has a sentence no other plot uses
    markers = ["was gone", "is stuck", "It is mine", "broke into two", "drops of rain", "loud noise",
               "did not know where", "hurt", "sitting all alone", "instead of sugar"]
    assert len(markers) == len(PROBLEMS)
    for marker in markers:
        assert any(marker in s for s in stories), marker


def test_reads_like_simple_english():
    for story in generate_stories(300, seed=2):
        assert "{" not in story and "}" not in story and "  " not in story
        paragraphs = story.split("\n\n")
        assert len(paragraphs) == 3
        for sentence in re.split(r'(?<=[.!?])"? +(?=["A-Z])', story.replace("\n\n", " ")):
            assert sentence[0].isupper() or sentence[0] == '"', sentence
            assert sentence.rstrip('"')[-1] in ".!?,", sentence
        assert 50 <= len(story.split()) <= 250
        assert story.count('"') % 2 == 0  # dialogue quotes are closed
