"""decode_speed times only the measured generations (not the warm-up) and reports their median rate."""

import pytest

from slmkit.eval import speed


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


def test_decode_speed_is_the_median_of_timed_runs(monkeypatch):
    clock = FakeClock()
    seconds_per_token = iter([1.0, 0.01, 0.02, 0.04])  # warm-up (slow: weights being repacked), then 3 runs
    calls = []

    class FakeGenerator:
        def __init__(self, model, eos_ids):
            assert eos_ids == set()

        def generate(self, prompt, max_new_tokens, temperature, ignore_eos=False):
            calls.append((len(prompt), max_new_tokens, temperature, ignore_eos))
            clock.now += max_new_tokens * next(seconds_per_token)

    monkeypatch.setattr(speed, "Generator", FakeGenerator)
    monkeypatch.setattr(speed.time, "perf_counter", clock.perf_counter)
    rate = speed.decode_speed(model=None, n_tokens=64, prompt_len=16, repeats=3)
    assert rate == pytest.approx(50.0)  # the median of 100, 50 and 25 tokens/s; the warm-up's 1/s left out
    assert calls == [(16, 4, 0, False)] + [(16, 64, 0, True)] * 3
