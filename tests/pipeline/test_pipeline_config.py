"""The recipe's checks before anything runs, the plan (what is reused, resumed or run) from fingerprints,
optional sources, and a failing stage's message."""

from __future__ import annotations

import pytest
import yaml

from slmkit.errors import ConfigError
from slmkit.pipeline import STAGE_NAMES, plan_pipeline, read_pipeline_config
from slmkit.pipeline.stage_configs import stage_recipes, write_stage_configs
from slmkit.pipeline.state import PipelineState
from tests.pipeline.conftest import run_pipeline_cli, tiny_recipe, write_workdir


def config(tmp_path, *overrides):
    """The tiny recipe (written once per test: rewriting local.txt would change the data stage's input)."""
    recipe = tmp_path / "recipe.yaml"
    if not recipe.exists():
        write_workdir(tmp_path)
    return read_pipeline_config(recipe, list(overrides))


def done_state(cfg, root, cwd) -> PipelineState:
    """A state in which every stage finished with the fingerprint `cfg` gives it, and its files exist."""
    state = PipelineState(root)
    for planned in plan_pipeline(cfg, state, stage_recipes(cfg, cwd)):
        record = state.record(planned.stage.name)
        record.fingerprint, record.status = planned.fingerprint, "done"
        for name in planned.stage.done_when(cfg):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("x")
    return state


def test_wrong_key_in_a_verb_section_fails_before_anything_runs(tmp_path):
    cfg = config(tmp_path, "sft.train.learning_rate=0.1")
    with pytest.raises(ConfigError, match=r"section sft: unknown config key 'train.learning_rate'"):
        write_stage_configs(cfg, tmp_path / "root", tmp_path)


@pytest.mark.parametrize("override, message", [
    ("pretrain.data.out_dir=x", "pretrain.data: the pretraining data is the pipeline's data section"),
    ("sft.base=runs/other", "sft.base: the pipeline fine-tunes its own pretrained model"),
    ("dpo.policy=runs/other", "dpo.policy: the pipeline aligns its own SFT model"),
])
def test_paths_the_pipeline_owns_cannot_be_set(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        write_stage_configs(config(tmp_path, override), tmp_path / "root", tmp_path)


def test_own_sections_are_typed(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'deploy.prot'"):
        config(tmp_path, "deploy.prot=9000")
    with pytest.raises(ConfigError, match="deploy.model=nf4 is not made by this recipe"):
        config(tmp_path, "deploy.model=nf4")
    with pytest.raises(ConfigError, match="unknown quantization method 'int2'"):
        config(tmp_path, "quantize.methods=[int2]")
    with pytest.raises(ConfigError, match="unknown config key 'evaluation'"):
        config(tmp_path, "evaluation.limit=3")


def test_plan_reuses_what_is_unchanged_and_reruns_what_depends_on_a_change(tmp_path):
    cfg, root = config(tmp_path), tmp_path / "root"
    state = done_state(cfg, root, tmp_path)
    assert {p.action for p in plan_pipeline(cfg, state, stage_recipes(cfg, tmp_path))} == {"reuse"}
    changed = config(tmp_path, "dpo.train.lr=0.01")
    plan = {p.stage.name: p.action for p in plan_pipeline(changed, state, stage_recipes(changed, tmp_path))}
    first = STAGE_NAMES.index("dpo")
    assert [plan[n] for n in STAGE_NAMES[:first]] == ["reuse"] * first
    assert [plan[n] for n in STAGE_NAMES[first:]] == ["run"] * (len(STAGE_NAMES) - first)
    changed = config(tmp_path, "data.sources.generated.limit=501")  # all but the instruction set read the data
    plan = {p.stage.name: p.action for p in plan_pipeline(changed, state, stage_recipes(changed, tmp_path))}
    assert plan == {**dict.fromkeys(STAGE_NAMES, "run"), "sft-data": "reuse"}


def test_edited_local_file_reruns_the_data_stage(tmp_path):
    cfg, root = config(tmp_path), tmp_path / "root"
    state = done_state(cfg, root, tmp_path)
    (tmp_path / "local.txt").write_text((tmp_path / "local.txt").read_text() + "\n\nOne more story about a dog.")
    plan = plan_pipeline(cfg, state, stage_recipes(cfg, tmp_path))
    assert plan[0].stage.name == "data" and plan[0].action == "run"


def test_interrupted_stage_resumes_and_missing_output_reruns(tmp_path):
    cfg, root = config(tmp_path), tmp_path / "root"
    state = done_state(cfg, root, tmp_path)
    state.stages["sft"].status = "interrupted"
    (root / "pretrain" / "model.safetensors").unlink()
    plan = {p.stage.name: p.action for p in plan_pipeline(cfg, state, stage_recipes(cfg, tmp_path))}
    assert plan["data"] == "reuse" and plan["pretrain"] == "run" and plan["sft"] == "resume"
    assert plan_pipeline(cfg, state, stage_recipes(cfg, tmp_path), start_from="eval")[-1].action == "run"
    with pytest.raises(ConfigError, match="--from nowhere: no such stage"):
        plan_pipeline(cfg, state, stage_recipes(cfg, tmp_path), start_from="nowhere")


def test_optional_sources_are_left_out_only_when_unreadable(tmp_path):
    cfg = config(tmp_path)
    assert set(stage_recipes(cfg, tmp_path)["data"]["sources"]) == {"generated", "local"}
    (tmp_path / "missing").mkdir()
    (tmp_path / "missing" / "a.txt").write_text("Once upon a time there was a fox who liked to run.\n")
    sources = stage_recipes(cfg, tmp_path)["data"]["sources"]
    assert set(sources) == {"generated", "local", "absent"} and "optional" not in sources["absent"]
    only_optional = {"absent": {"kind": "files", "paths": ["nothing/*.txt"], "optional": True}}
    cfg = config(tmp_path, f"data.sources={yaml.safe_dump(only_optional, default_flow_style=True).strip()}")
    with pytest.raises(ConfigError, match="every source is optional and none can be read here.*no file matches"):
        stage_recipes(cfg, tmp_path)


def test_failing_stage_names_itself_and_its_log(tmp_path):
    recipe = tiny_recipe(tmp_path)
    recipe["data"]["sources"]["local"]["paths"] = ["not-there.txt"]
    write_workdir(tmp_path, data=recipe["data"])
    out = run_pipeline_cli(tmp_path, timeout=120)
    assert out.returncode == 1
    message = out.stderr.strip().splitlines()[-1]
    assert message.startswith("error: stage data failed (slm prepare exited with 1): see ")
    assert "logs/data.log" in message and "no input file matches" in message
    state = PipelineState.load(tmp_path / "runs" / "tiny")
    assert state.stages["data"].status == "failed" and "pretrain" not in state.stages


def test_a_second_pipeline_in_the_same_root_is_refused(tmp_path):
    import fcntl

    from slmkit.pipeline import run_pipeline
    from slmkit.pipeline.runner import LOCK_FILE

    cfg = config(tmp_path)
    root = tmp_path / "runs" / "tiny"
    root.mkdir(parents=True)
    with open(root / LOCK_FILE, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running pipeline holds it
        with pytest.raises(ConfigError, match="another slm pipeline is running in"):
            run_pipeline(cfg, cwd=tmp_path, log=lambda *_: None)
    assert not (root / "pipeline.json").exists()


def test_files_named_by_the_recipe_are_found_from_where_it_was_started(tmp_path):
    from slmkit.pipeline.stage_configs import with_local_paths
    from slmkit.pipeline.stages import STAGES

    (tmp_path / "rules.yaml").write_text("principles: []\n")
    (tmp_path / "judge-model").mkdir()
    cfg = with_local_paths(config(tmp_path, "preferences.kind=constitution", "preferences.constitution=rules.yaml",
                                  "eval.judge=judge-model"), tmp_path)
    preferences = next(s for s in STAGES if s.name == "preferences").commands(cfg)[0]
    assert preferences[preferences.index("--constitution") + 1] == str(tmp_path / "rules.yaml")
    evaluate = next(s for s in STAGES if s.name == "eval").commands(cfg)[0]
    assert evaluate[evaluate.index("--judge") + 1] == str(tmp_path / "judge-model")
    url = with_local_paths(config(tmp_path, "eval.judge=http://127.0.0.1:8001/v1"), tmp_path)
    assert url.eval.judge == "http://127.0.0.1:8001/v1"
