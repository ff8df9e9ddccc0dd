"""Checkable story requests: replies are checked by code, per kind; a reply that repeats the reference passes,
a wrong or empty one fails; and a real model runs through LocalGenerator end to end."""

from slmkit.data.sources.instruction_checks import prompt_and_reference
from slmkit.data.sources.instructions import generate_instruction_examples
from slmkit.eval.generation import LocalGenerator
from slmkit.eval.story_requests import run_story_requests


class Scripted:
    """Answers each conversation with a function of it, recording what it was asked."""

    def __init__(self, answer):
        self.answer, self.asked = answer, []

    def chat(self, conversations, max_new_tokens=128, temperature=0.0, seed=0):
        self.asked.extend(conversations)
        return [self.answer(c) for c in conversations]


def reference_of(conversation):
    for example in generate_instruction_examples(30, seed=4, split="heldout"):
        messages, reference = prompt_and_reference(example)
        if messages == conversation:
            return reference
    raise AssertionError("asked a conversation that is not in the held-out set")


def test_reference_answers_pass_and_empty_ones_fail():
    perfect = run_story_requests(Scripted(reference_of), n=30, seed=4)
    assert perfect.documents == 30 and perfect.metrics["accuracy"] == 1.0
    assert {"story_request_accuracy", "story_question_accuracy"} <= set(perfect.metrics)
    silent = run_story_requests(Scripted(lambda c: ""), n=30, seed=4)
    assert silent.metrics["accuracy"] == 0.0 and not silent.samples[0]["ok"]


def test_a_real_model_runs_through_the_local_generator(random_model, eval_tokenizer):
    result = run_story_requests(LocalGenerator(random_model, eval_tokenizer), n=4, max_new_tokens=8)
    assert result.documents == 4 and 0.0 <= result.metrics["accuracy"] <= 1.0
    assert all(isinstance(s["reply"], str) for s in result.samples)
