"""Constitutional (rule-based) preference data: the policy drafts, is judged against written principles, and revises;
the revised answer is chosen and the draft rejected (Bai et al. 2022, "Constitutional AI", its supervised stage).

    constitution = read_constitution("configs/constitution.yaml")
    report = write_constitutional_pairs(generator, prompts, constitution, "data/prefs.jsonl", samples=4)

A constitution is a YAML list of principles, each with a `name`, a `critique` request, a `revision` request and
optionally a `rule` (a bundled reward rule, rule_rewards.RULES) that decides whether an answer satisfies it:

    principles:
      - name: follows_request
        critique: "Does the story name everyone and everything the user asked for? Say what is missing."
        revision: "Rewrite the story so that it names everything the user asked for."
        rule: story

For every prompt the policy samples `samples` drafts. A principle with a rule ranks them: a draft that satisfies
every ruled principle is chosen, one that breaks some is rejected (no model call needed). When no draft satisfies
them, the policy critiques and revises the first failing draft principle by principle (the conversation: the
request, the draft, "critique request", its critique, "revision request", its revision); the revision is chosen
when it satisfies the rules it was revised for (or always, for principles without a rule) and the draft rejected.
Prompts where neither works give no pair and are counted. Records are preference_data's conversational format plus
`principles` (which were broken) and `how` ("ranked" or "revised").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from slmkit.align.prompt_data import PromptRecord
from slmkit.align.rule_rewards import RULES, Rollout
from slmkit.config import read_yaml
from slmkit.errors import ConfigError
from slmkit.fileio import atomic_file
from slmkit.infer.sampling import SamplingParams
from slmkit.tokenizer.chat_template import render_chat


@dataclass
class Principle:
    name: str
    critique: str
    revision: str
    rule: str | None = None

    def satisfied(self, rollout: Rollout) -> bool | None:
        """True / False by its rule; None when it has none (only a revision can serve it)."""
        return None if self.rule is None else bool(RULES[self.rule](rollout))


def read_constitution(path: str | Path) -> list[Principle]:
    data = read_yaml(path)
    items = data.get("principles") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{path}: a constitution is a YAML mapping with a non-empty 'principles' list")
    principles = []
    for k, item in enumerate(items):
        if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in ("name", "critique", "revision")):
            raise ConfigError(f"{path}: principle {k} needs string 'name', 'critique' and 'revision'")
        unknown = sorted(set(item) - {"name", "critique", "revision", "rule"})
        if unknown:
            raise ConfigError(f"{path}: principle {k} has an unknown key '{unknown[0]}'")
        rule = item.get("rule")
        if rule is not None and rule not in RULES:
            raise ConfigError(f"{path}: principle {item['name']!r} names an unknown rule {rule!r} ({', '.join(RULES)})")
        principles.append(Principle(item["name"], item["critique"], item["revision"], rule))
    return principles


def broken(principles: list[Principle], rollout: Rollout) -> list[str]:
    return [p.name for p in principles if p.satisfied(rollout) is False]


class ConstitutionalPairs:
    """Makes one pair per prompt with `generator` (infer.Generator over the policy)."""

    def __init__(self, generator, principles: list[Principle], samples: int = 4, max_new_tokens: int = 160,
                 temperature: float = 1.0, seed: int = 0):
        if samples < 1:
            raise ConfigError(f"samples must be at least 1, got {samples}")
        self.generator, self.principles, self.samples, self.seed = generator, principles, samples, seed
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.tokenizer = generator.tokenizer

    def _complete(self, conversations: list[list[dict]], record: PromptRecord, seed: int,
                  temperature: float) -> list[Rollout]:
        prompts = [self.tokenizer.encode(render_chat(self.tokenizer, c, add_generation_prompt=True)) for c in conversations]
        params = SamplingParams(max_new_tokens=self.max_new_tokens, temperature=temperature, seed=seed)
        done = self.generator.generate(prompts, params)
        return [Rollout(record.messages, record.check, c.text.strip(), list(c.prompt_ids), list(c.token_ids),
                        c.finish_reason == "stop", self.max_new_tokens) for c in done]

    def pair(self, record: PromptRecord, index: int) -> dict | None:
        seed = self.seed * 1_000_003 + index * 64
        drafts = self._complete([record.messages] * self.samples, record, seed, self.temperature)
        failing = [(d, broken(self.principles, d)) for d in drafts]
        good = [d for d, b in failing if not b]
        bad = [(d, b) for d, b in failing if b]
        if good and bad:
            return self._record(record, good[0].text, bad[0][0].text, bad[0][1], "ranked")
        draft, names = bad[0] if bad else (drafts[0], [])
        revised = self._revise(record, draft, [p for p in self.principles if p.rule is None or p.name in names], seed)
        if revised is None or revised.text == draft.text or broken(self.principles, revised):
            return None
        return self._record(record, revised.text, draft.text, names or [p.name for p in self.principles], "revised")

    def _revise(self, record: PromptRecord, draft: Rollout, principles: list[Principle], seed: int) -> Rollout | None:
        answer = draft
        for k, principle in enumerate(principles):
            talk = [*record.messages, {"role": "assistant", "content": answer.text},
                    {"role": "user", "content": principle.critique}]
            critique = self._complete([talk], record, seed + 1 + 2 * k, 0.0)[0]
            talk += [{"role": "assistant", "content": critique.text}, {"role": "user", "content": principle.revision}]
            answer = self._complete([talk], record, seed + 2 + 2 * k, 0.0)[0]
        return answer if principles else None

    @staticmethod
    def _record(record: PromptRecord, chosen: str, rejected: str, principles: list[str], how: str) -> dict:
        return {"prompt": record.messages, "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}], "principles": principles, "how": how,
                **({"check": record.check} if record.check is not None else {})}


def write_constitutional_pairs(maker: ConstitutionalPairs, prompts: list[PromptRecord], out: str | Path,
                               progress=None) -> dict:
    """Pairs for `prompts` into `out` (JSONL, written atomically); {"pairs", "ranked", "revised", "skipped", "path"}."""
    rows, counts = [], {"ranked": 0, "revised": 0, "skipped": 0}
    for i, record in enumerate(prompts):
        row = maker.pair(record, i)
        counts[row["how"] if row else "skipped"] += 1
        if row:
            rows.append(row)
        if progress:
            progress(i + 1, len(prompts))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(out) as tmp:
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return {"pairs": len(rows), **counts, "path": str(out)}
