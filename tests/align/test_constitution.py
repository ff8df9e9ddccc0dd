"""Constitutional preference pairs: drafts ranked by the principles' rules, critique-and-revise when no draft
satisfies them (revised = chosen), prompts skipped when neither works, the constitution file checked, and the
`slm data preferences` verb end to end on a tiny policy."""

import json
from dataclasses import dataclass

import pytest

from slmkit.align.constitution import ConstitutionalPairs, Principle, read_constitution, write_constitutional_pairs
from slmkit.align.prompt_data import PromptRecord
from slmkit.cli import main
from slmkit.errors import ConfigError
from slmkit.tokenizer import load_tokenizer
from slmkit.tokenizer.chat_template import with_default_chat_template
from tests.cli.test_finetune_cmd import _base

CHECK = {"kind": "story_request", "name": "Max", "character": "cat", "object": "key", "cast": ["Max", "key"]}
GOOD = "Max the cat found a key. He was happy."
BAD = "Tom the dog found a ball. He was happy."
RULED = [Principle("follows_request", "Did you name everything?", "Rewrite it naming everything.", "story"),
         Principle("finished", "Does it end?", "Rewrite it with an ending.", "sentence")]


@dataclass
class Done:
    text: str
    prompt_ids: list
    token_ids: list
    finish_reason: str = "stop"


class ScriptedGenerator:
    """Stands in for infer.Generator: answers from a script, and records the conversations it was given."""

    def __init__(self, tokenizer, script):
        self.tokenizer, self.script, self.prompts = tokenizer, list(script), []

    def generate(self, prompts, params):
        self.prompts.extend(self.tokenizer.decode(p) for p in prompts)
        return [Done(self.script.pop(0), list(p), [1]) for p in prompts]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    root = tmp_path_factory.mktemp("cai")
    _base(root)
    return with_default_chat_template(load_tokenizer(root / "tok"))[0]


RECORD = PromptRecord([{"role": "user", "content": "Write a story about a cat named Max and a key."}], CHECK)


def test_rules_rank_the_drafts(tokenizer):
    maker = ConstitutionalPairs(ScriptedGenerator(tokenizer, [BAD, GOOD, BAD]), RULED, samples=3)
    pair = maker.pair(RECORD, 0)
    assert pair["how"] == "ranked" and pair["chosen"][0]["content"] == GOOD and pair["rejected"][0]["content"] == BAD
    assert pair["principles"] == ["follows_request"] and pair["check"] == CHECK


def test_critique_and_revise_when_no_draft_passes(tokenizer):
    # both drafts break both rules; critique 1, revision 1 (still unfinished), critique 2, revision 2 (passes both)
    worst = "Tom the dog found a ball and"
    script = [worst, worst, "It lacks Max.", "Max the cat found a key and", "It stops.", GOOD]
    generator = ScriptedGenerator(tokenizer, script)
    pair = ConstitutionalPairs(generator, RULED, samples=2).pair(RECORD, 0)
    assert pair["how"] == "revised" and pair["chosen"][0]["content"] == GOOD and pair["rejected"][0]["content"] == worst
    assert pair["principles"] == ["follows_request", "finished"]
    # the last revision request saw the draft's revision history: request, draft, critique, revision request
    assert "Rewrite it with an ending." in generator.prompts[-1] and "It stops." in generator.prompts[-1]


def test_no_pair_when_the_revision_still_fails(tokenizer, tmp_path):
    script = [BAD, "meh", BAD, "meh", BAD]
    maker = ConstitutionalPairs(ScriptedGenerator(tokenizer, script), RULED[:1], samples=1)
    report = write_constitutional_pairs(maker, [RECORD], tmp_path / "p.jsonl")
    assert report["pairs"] == 0 and report["skipped"] == 1 and (tmp_path / "p.jsonl").read_text() == ""


def test_constitution_file_is_checked(tmp_path):
    assert [p.rule for p in read_constitution("configs/constitution.yaml")] == ["story", "sentence", None]
    bad = tmp_path / "c.yaml"
    bad.write_text("principles:\n  - name: x\n    critique: c\n    revision: r\n    rule: tidy\n")
    with pytest.raises(ConfigError, match="unknown rule 'tidy'"):
        read_constitution(bad)
    bad.write_text("principles: []\n")
    with pytest.raises(ConfigError, match="non-empty 'principles'"):
        read_constitution(bad)


def test_the_cli_verb_on_a_tiny_policy(tmp_path, capsys):
    _base(tmp_path)
    run = tmp_path / "sft"
    assert main(["finetune", "configs/sft-lora.yaml", f"base={tmp_path / 'base'}", f"data.train={tmp_path / 'sft.jsonl'}",
                 "data.eval=null", f"train.out_dir={run}", "train.max_steps=1", "train.max_minutes=null",
                 "train.time_schedule=false", "train.warmup_steps=0", "train.batch_size=2", "train.eval_every=0",
                 "train.sample_tokens=0", "train.plots=false", "train.tensorboard=false", "--no-progress"]) == 0
    out = tmp_path / "prefs.jsonl"
    code = main(["data", "preferences", "--constitution", "configs/constitution.yaml", "--policy", str(run),
                 "--prompts", str(tmp_path / "sft.jsonl"), "--limit", "2", "--samples", "2", "--max-new-tokens", "8",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0 and "from 2 prompts" in printed and out.is_file()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert all({"prompt", "chosen", "rejected", "how"} <= r.keys() for r in rows)
