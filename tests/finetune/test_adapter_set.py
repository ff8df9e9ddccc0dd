"""Several adapters on one base: each batch row of one forward gives what its adapter gives when
loaded alone (slmkit LoRA with added chat tokens, DoRA on two projections, and an adapter written by
PEFT itself), mixed-adapter batched generation equals each adapter's own, and bad sets are refused."""

import peft
import pytest
import torch
from transformers import AutoModelForCausalLM

from slmkit.errors import CheckpointError
from slmkit.finetune.adapter_set import AdapterFiles, _check_compatible, load_adapter_set
from slmkit.finetune.lora import LoraConfig
from slmkit.finetune.loading import load_for_use
from slmkit.finetune.run import finetune
from slmkit.infer.engine import BatchGenerator
from slmkit.infer.sampling import SamplingParams
from slmkit.interop.hf_export import export_hf
from slmkit.loading import load_model
from slmkit.model import Decoder
from tests.finetune.tiny_workspace import finetune_config, make_workspace, quiet


@pytest.fixture(scope="module")
def adapters(tmp_path_factory):
    """{name: directory}: a LoRA (all-linear, ChatML tokens added), a DoRA (q/v only), a PEFT-made LoRA."""
    root = make_workspace(tmp_path_factory.mktemp("set"))
    finetune(finetune_config(root, "lora", root / "lora"), log=quiet)
    finetune(finetune_config(root, "lora", root / "dora", "lora.dora=true", "lora.targets=[q_proj,v_proj]",
                             "train.seed=1"), log=quiet)
    base, _ = load_model(root / "base")
    export_hf(base, root / "base-hf", tokenizer_dir=root / "tok")
    hf = AutoModelForCausalLM.from_pretrained(root / "base-hf")
    made = peft.get_peft_model(hf, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["o_proj", "down_proj"]))
    torch.manual_seed(2)
    for name, p in made.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.1)  # PEFT starts B at zero: make the adapter change something
    made.save_pretrained(root / "peft")
    return root, {"chat": root / "lora", "dora": root / "dora", "peft": root / "peft"}


def _alone(root, directory):
    return load_for_use(directory, base=root / "base" if "peft" in str(directory) else None, merge=False)[0]


def test_each_row_gets_its_own_adapter(adapters):
    root, dirs = adapters
    model, served = load_adapter_set(root / "base", dirs)
    assert [s.name for s in served] == ["base", "chat", "dora", "peft"]
    assert [s.index for s in served] == [-1, 0, 1, 2] and served[1].vocab_size == 602
    ids = torch.randint(0, 600, (4, 12), generator=torch.Generator().manual_seed(0))
    model.adapter_route.set([0, -1, 2, 1])
    with torch.no_grad():
        routed = model(ids).logits
        base = load_model(root / "base")[0](ids).logits
        chat, dora, made = (_alone(root, dirs[k])(ids).logits for k in ("chat", "dora", "peft"))
    for row, expected in [(0, chat[0]), (1, base[1]), (2, made[2]), (3, dora[3])]:
        width = expected.shape[-1]
        torch.testing.assert_close(routed[row, :, :width], expected, atol=1e-5, rtol=1e-5)
    for adapted in (chat, dora, made):  # every adapter changes the logits, so a row routed wrong would show
        assert not torch.allclose(adapted[..., :600], base, atol=1e-3)
    assert torch.isneginf(routed[1, :, 600:]).all()  # the base row cannot pick the chat tokens it does not have
    hf = AutoModelForCausalLM.from_pretrained(root / "base-hf")
    theirs = peft.PeftModel.from_pretrained(hf, dirs["peft"]).eval()
    with torch.no_grad():
        torch.testing.assert_close(routed[2, :, :600], theirs(ids[2:3]).logits[0], atol=1e-4, rtol=1e-4)


def test_mixed_batch_generation_equals_each_adapter_alone(adapters):
    root, dirs = adapters
    model, served = load_adapter_set(root / "base", dirs)
    prompt = [5, 17, 42, 99, 7]
    params = SamplingParams(temperature=0, max_new_tokens=10, ignore_eos=True)
    engine = BatchGenerator(model, max_batch=4)
    for s in served:
        engine.add(prompt, params, request_id=s.name, adapter=s)
    got = _tokens(engine)
    for s in served:
        alone = load_model(root / "base")[0] if s.index < 0 else _alone(root, dirs[s.name])
        single = BatchGenerator(alone, max_batch=1)
        single.add(prompt, params, request_id=s.name)
        assert got[s.name] == _tokens(single)[s.name], s.name
    assert len({tuple(v) for v in got.values()}) > 1


def _tokens(engine) -> dict[str, list[int]]:
    got: dict[str, list[int]] = {}
    while engine.has_work():
        for event in engine.step():
            if event.token_id is not None:
                got.setdefault(event.request_id, []).append(event.token_id)
    return got


def test_an_adapter_of_another_base_is_refused_by_name(adapters, tmp_path):
    root, dirs = adapters
    torch.manual_seed(5)
    Decoder(load_model(root / "base")[0].config).save_pretrained(tmp_path / "other", tokenizer_dir=root / "tok")
    with pytest.raises(CheckpointError, match="adapter chat .*fingerprint"):
        load_adapter_set(tmp_path / "other", {"chat": dirs["chat"]})
    with pytest.raises(CheckpointError, match="adapter nope: .* neither"):
        load_adapter_set(root / "base", {"nope": tmp_path})


def _files(name, lora_modules, tensors, quantization=None):
    return AdapterFiles(name, None, LoraConfig(), lora_modules, tensors, 600, quantization, None, peft=False)


def test_sets_that_cannot_share_one_base_are_refused():
    lora = _files("a", ["blocks.0.attn.q_proj"], {"blocks.0.attn.q_proj.lora_A": torch.zeros(1)})
    qlora = _files("q", ["blocks.0.attn.q_proj"], {"blocks.0.attn.q_proj.lora_A": torch.zeros(1)}, "nf4")
    with pytest.raises(CheckpointError, match="adapters q were trained on an NF4 base"):
        _check_compatible([lora, qlora])
    whole_attention = _files("b", [], {"blocks.0.attn.q_proj.weight": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="adapter b trains blocks.0.attn.q_proj in full"):
        _check_compatible([lora, whole_attention])
    _check_compatible([lora, _files("c", [], {"blocks.1.mlp_norm.weight": torch.zeros(1)})])  # disjoint: fine
