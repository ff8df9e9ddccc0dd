"""The report's pieces on planted inputs: the post-mortem's rules fire on a loss spike, skipped steps, an
unconverged run and a model behind the n-gram baseline, and stay quiet on a clean run; Markdown and HTML
render the same blocks."""

from __future__ import annotations

import json

from slmkit.eval.evaluation_run import EvalResults
from slmkit.pipeline.report_postmortem import postmortem
from slmkit.pipeline.report_render import to_html, to_markdown
from slmkit.pipeline.state import PipelineState, StageRecord


def write_metrics(run_dir, losses, val_bpb, skipped=0):
    run_dir.mkdir(parents=True)
    records = [{"step": i, "kind": "train", "loss": loss, "tokens": 100 * i, "skipped_total": skipped}
               for i, loss in enumerate(losses, start=1)]
    records += [{"step": 10 * i, "kind": "eval", "val_bpb": v, "val_loss": v} for i, v in enumerate(val_bpb)]
    (run_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")


def results(base_bpb: float, sft_acc: float, dpo_acc: float) -> EvalResults:
    per = lambda bpb, acc: {"text": {"bits_per_byte": bpb}, "story_requests": {"accuracy": acc}}  # noqa: E731
    return EvalResults(models=[{"name": n, "path": n} for n in ("base", "sft", "dpo")],
                       results={"base": per(base_bpb, 0.0), "sft": per(1.0, sft_acc), "dpo": per(0.9, dpo_acc)},
                       baselines={"kneser-ney-3": {"text": {"bits_per_byte": 1.2}}})


def state(root, **seconds) -> PipelineState:
    s = PipelineState(root)
    for name, value in seconds.items():
        s.stages[name] = StageRecord(status="done", seconds=value, attempts=1)
    return s


def items(blocks):
    return [item for block in blocks if block[0] == "ul" for item in block[1]]


def test_postmortem_reports_planted_trouble(tmp_path):
    write_metrics(tmp_path / "pretrain", [5.0, 4.0, 3.0, 2.5, 2.0, 1.9, 1.8, 1.7, 4.2, 1.6], [3.0, 2.0, 1.5], skipped=2)
    s = state(tmp_path, data=5, pretrain=100, eval=20)
    s.stages["pretrain"].attempts = 2
    found = "\n".join(items(postmortem(tmp_path, s, results(1.5, 0.3, 0.2))))
    assert "slowest stage: **pretrain**, 100 s of 125 s (80%)" in found
    assert "pretrain was interrupted (or failed) and resumed" in found
    assert "pretraining: 2 step(s) skipped" in found
    assert "the loss spiked to 4.200 at step 9" in found
    assert "still falling at the end (2.0000 -> 1.5000)" in found
    assert "models under the n-gram baseline's 1.2000 bits per byte: sft, dpo; not: base" in found
    assert "SFT: story-request accuracy 0.000 -> 0.300" in found and "DPO: story-request accuracy 0.300 -> 0.200" in found
    assert "DPO: no gain on the checked requests" in found and "SFT: no gain" not in found
    assert "does not beat a Kneser-Ney n-gram" in found
    assert "forgot part of the pretraining distribution" not in found  # base 1.5 -> sft 1.0


def test_postmortem_flags_forgetting_and_reports_preference_accuracy(tmp_path):
    write_metrics(tmp_path / "dpo", [0.69, 0.6, 0.5], [])
    (tmp_path / "dpo" / "metrics.jsonl").open("a").write(
        "\n".join(json.dumps({"step": s, "kind": "eval", "val_accuracy": a}) for s, a in ((0, 0.5), (50, 0.9))) + "\n")
    found = "\n".join(items(postmortem(tmp_path, state(tmp_path, dpo=10), results(0.5, 0.3, 0.4))))
    assert "SFT raised the bits per byte on plain text 0.5000 -> 1.0000" in found
    assert "DPO: held-out preference accuracy 0.500 -> 0.900" in found


def test_postmortem_is_quiet_on_a_clean_run(tmp_path):
    write_metrics(tmp_path / "pretrain", [5.0, 4.0, 3.0, 2.5, 2.0, 1.9, 1.8, 1.7, 1.65, 1.6], [3.0, 1.5, 1.49])
    found = "\n".join(items(postmortem(tmp_path, state(tmp_path, pretrain=10), results(1.0, 0.3, 0.4))))
    for word in ("spiked", "skipped", "still falling", "no gain", "not:"):
        assert word not in found


def test_markdown_and_html_render_the_same_blocks():
    blocks = [("h1", "Report"), ("p", "a **bold** <claim>"), ("ul", ["one", "two"]),
              ("table", ["model", "bpb"], [["base", "1.0|2"]]), ("img", "plot.png", "a plot"), ("pre", "x < y")]
    md = to_markdown(blocks)
    assert md.startswith("# Report\n\na **bold** <claim>\n\n- one\n- two\n\n| model | bpb |\n|---|---|\n| base | 1.0\\|2 |")
    assert "![a plot](plot.png)" in md and "```\nx < y\n```" in md
    page = to_html(blocks, "t")
    assert "<p>a <b>bold</b> &lt;claim&gt;</p>" in page and "<td>1.0|2</td>" in page
    assert "<img src='plot.png' alt='a plot'>" in page and "<pre>x &lt; y</pre>" in page
