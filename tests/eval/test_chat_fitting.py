"""The shared rule for fitting a prompt and its reply into a window: the reply's reserve, the cut of a
conversation's start, and a local model given a prompt longer than its window."""

from slmkit.eval.chat_fitting import cut_conversation, prompt_room, reply_reserve
from slmkit.eval.generation import LocalGenerator


def test_the_reply_keeps_a_quarter_of_the_window_at_most():
    assert reply_reserve(256, 96) == 64 and prompt_room(256, 96) == 192
    assert reply_reserve(256, 8) == 8 and prompt_room(256, 8) == 248
    assert reply_reserve(2, 100) == 1 and prompt_room(1, 100) == 1


def test_the_first_non_system_message_loses_its_start():
    chat = [{"role": "system", "content": "Rules."}, {"role": "user", "content": "abcdefghij" * 10},
            {"role": "assistant", "content": "Sure."}, {"role": "user", "content": "And then?"}]
    cut = cut_conversation(chat, 0.5)
    assert cut[0] == chat[0] and cut[2:] == chat[2:] and chat[1]["content"].endswith(cut[1]["content"])
    assert len(cut[1]["content"]) == 47  # half, less the 5 % margin
    assert cut_conversation(chat, 0.0) == [chat[0]] + chat[2:]  # cut to nothing: dropped
    only = [{"role": "user", "content": "Question?"}]
    assert cut_conversation(only, 0.0) == [{"role": "user", "content": "?"}]  # the last message keeps a character


def test_a_local_prompt_longer_than_the_window_is_answered(random_model, eval_tokenizer):
    window = random_model.config.max_seq_len
    long_question = "Once upon a time there was a cat. " * (window // 4)
    assert len(eval_tokenizer.encode(long_question)) > window
    generator = LocalGenerator(random_model, eval_tokenizer)
    replies = generator.chat([[{"role": "user", "content": long_question}]], max_new_tokens=8)
    assert len(replies) == 1 and isinstance(replies[0], str)
    assert len(generator.complete([long_question], max_new_tokens=window * 2)) == 1  # stops at the window's end
