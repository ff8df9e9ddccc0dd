"""Our adapters as PEFT adapters and back: the names, shapes and scalings PeftModel.from_pretrained reads.

    config, tensors = to_peft(meta, adapter_tensors, model_config)        # -> adapter_config.json + safetensors
    lora, tensors, modules = from_peft(peft_config, peft_tensors, model_config)   # a PEFT adapter, our names

PEFT keys are `base_model.model.` + the Hugging Face module path + `.lora_A.weight` [r, in] /
`.lora_B.weight` [out, r] / `.lora_magnitude_vector` [out] (DoRA); fully trained modules are
`modules_to_save`, stored as `base_model.model.<module>.weight`. Our RoPE is the HF half-split layout,
so q/k adapters need no permutation. GPT-2 fuses q, k and v into one `c_attn` (Conv1D): our three
adapters become one of rank n·r, A stacked [n·r, d] and B block-diagonal [3d, n·r] (zero blocks for
projections left out), with `rank_pattern`/`alpha_pattern` keeping the scaling; a PEFT `c_attn`
adapter splits exactly the other way (each of q, k, v gets A and its third of B).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from slmkit.errors import CheckpointError
from slmkit.fileio import atomic_file, write_text_atomic
from slmkit.finetune.lora import LoraConfig, add_lora
from slmkit.model.checkpoint import read_weights
from slmkit.interop.hf_config import GPT2, export_architecture

PREFIX = "base_model.model."
_ROPE = [(r"blocks\.(\d+)\.attn\.out_proj", r"model.layers.\1.self_attn.o_proj"),
         (r"blocks\.(\d+)\.attn\.(q|k|v)_proj", r"model.layers.\1.self_attn.\2_proj"),
         (r"blocks\.(\d+)\.mlp\.router", r"model.layers.\1.mlp.gate"),
         (r"blocks\.(\d+)\.mlp\.(gate|up|down)_proj", r"model.layers.\1.mlp.\2_proj"),
         (r"head", "lm_head"), (r"embed", "model.embed_tokens"), (r"final_norm", "model.norm")]
_GPT2 = [(r"blocks\.(\d+)\.attn\.out_proj", r"transformer.h.\1.attn.c_proj"),
         (r"blocks\.(\d+)\.mlp\.up_proj", r"transformer.h.\1.mlp.c_fc"),
         (r"blocks\.(\d+)\.mlp\.down_proj", r"transformer.h.\1.mlp.c_proj"),
         (r"head", "lm_head"), (r"embed", "transformer.wte"), (r"final_norm", "transformer.ln_f")]
_QKV = ("q_proj", "k_proj", "v_proj")


def _rename(name: str, table: list[tuple[str, str]], reverse: bool = False) -> str | None:
    """Our module name -> the HF one (or back with reverse=True); None when the table has no row for it."""
    for ours, hf in table:
        if reverse:
            regex, to_ours = _reverse_pattern(ours, hf)
            match = re.fullmatch(regex, name)
            if match:
                return to_ours(match)
        elif re.fullmatch(ours, name):
            return re.sub(ours, hf, name)
    return None


def _reverse_pattern(ours: str, hf: str):
    """(regex over the HF name, function of the match -> our name) for one row of a table."""
    groups = {"1": r"(\d+)", "2": r"(q|k|v|gate|up|down)"}
    regex = re.escape(hf.replace(r"\1", "@1").replace(r"\2", "@2"))
    for key, group in groups.items():
        regex = regex.replace(f"@{key}", group)
    template = ours.replace(r"(\d+)", "{1}").replace("(q|k|v)", "{2}").replace("(gate|up|down)", "{2}")
    template = template.replace("\\.", ".")
    return regex, lambda m: template.format(None, *m.groups())


def _table(model_config) -> tuple[list[tuple[str, str]], bool]:
    gpt2 = export_architecture(model_config) == GPT2
    return (_GPT2 if gpt2 else _ROPE), gpt2


def to_peft(meta: dict, tensors: dict[str, torch.Tensor], model_config) -> tuple[dict, dict[str, torch.Tensor]]:
    """(adapter_config.json contents, PEFT tensors) for one of our adapters."""
    lora = LoraConfig(**meta["lora"])
    table, gpt2 = _table(model_config)
    out: dict[str, torch.Tensor] = {}
    targets, rank_pattern, alpha_pattern = set(), {}, {}
    for module in meta["modules"]:
        parts = module.split(".")
        if gpt2 and parts[-1] in _QKV:
            continue
        hf = _rename(module, table)
        if hf is None:
            raise CheckpointError(f"no Hugging Face name for adapted module {module}")
        targets.add(hf.split(".")[-1])
        for ours_key, peft_key in (("lora_A", "lora_A.weight"), ("lora_B", "lora_B.weight"),
                                   ("lora_magnitude", "lora_magnitude_vector")):
            if f"{module}.{ours_key}" in tensors:
                out[f"{PREFIX}{hf}.{peft_key}"] = tensors[f"{module}.{ours_key}"]
    if gpt2:
        fused_rank = _fuse_gpt2_qkv(meta["modules"], tensors, lora, model_config, out)
        if fused_rank:
            targets.add("c_attn")
            rank_pattern["c_attn"] = fused_rank
            alpha_pattern["c_attn"] = lora.scaling * (math.sqrt(fused_rank) if lora.rslora else fused_rank)
    modules_to_save = []
    for name in lora.train_modules:
        hf = _rename(name, table)
        if hf is None:
            raise CheckpointError(f"no Hugging Face name for trained module {name}")
        modules_to_save.append(hf.split(".")[-1])
        for key, value in tensors.items():
            if key.startswith(name + "."):
                out[PREFIX + hf + key[len(name):]] = value
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": meta["base"]["path"],
              "r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
              "target_modules": sorted(targets), "bias": "none", "fan_in_fan_out": gpt2,
              "use_rslora": lora.rslora, "use_dora": lora.dora, "init_lora_weights": True, "inference_mode": True,
              "modules_to_save": modules_to_save or None, "rank_pattern": rank_pattern, "alpha_pattern": alpha_pattern}
    return config, {k: v.contiguous() for k, v in out.items()}


def _fuse_gpt2_qkv(modules: list[str], tensors: dict, lora: LoraConfig, config, out: dict) -> int:
    """Write each layer's q/k/v adapters as one c_attn adapter; returns the fused rank (0: none)."""
    fused_rank = 0
    d = config.d_model
    for i in range(config.n_layers):
        present = [p for p in _QKV if f"blocks.{i}.attn.{p}" in modules]
        if not present:
            continue
        if lora.dora and len(present) != 3:
            raise CheckpointError("a GPT-2 DoRA adapter exports to PEFT only when q_proj, k_proj and v_proj are "
                                  "all adapted (PEFT's c_attn has one magnitude for all three)")
        r = lora.r * len(present)
        fused_rank = r
        a = torch.cat([tensors[f"blocks.{i}.attn.{p}.lora_A"] for p in present])
        b = torch.zeros(3 * d, r)
        for k, p in enumerate(present):
            row = _QKV.index(p) * d
            b[row:row + d, k * lora.r:(k + 1) * lora.r] = tensors[f"blocks.{i}.attn.{p}.lora_B"]
        key = f"{PREFIX}transformer.h.{i}.attn.c_attn"
        out[f"{key}.lora_A.weight"], out[f"{key}.lora_B.weight"] = a, b
        if lora.dora:
            out[f"{key}.lora_magnitude_vector"] = torch.cat([tensors[f"blocks.{i}.attn.{p}.lora_magnitude"]
                                                             for p in _QKV])
    return fused_rank


def from_peft(config: dict, tensors: dict[str, torch.Tensor], model_config) -> tuple[LoraConfig, dict, list[str]]:
    """(LoraConfig, tensors by our names, adapted module names) from a PEFT LoRA adapter."""
    if config.get("peft_type") != "LORA":
        raise CheckpointError(f"only PEFT LoRA adapters load into slmkit, this one is {config.get('peft_type')!r}")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise CheckpointError("PEFT adapters with rank_pattern/alpha_pattern (per-module ranks) are not supported")
    table, gpt2 = _table(model_config)
    lora = LoraConfig(r=int(config.get("r", 8)), alpha=float(config.get("lora_alpha", 8)),
                      dropout=float(config.get("lora_dropout", 0.0)), rslora=bool(config.get("use_rslora")),
                      dora=bool(config.get("use_dora")))
    ours: dict[str, torch.Tensor] = {}
    modules: list[str] = []
    suffixes = {"lora_A.weight": "lora_A", "lora_B.weight": "lora_B", "lora_magnitude_vector": "lora_magnitude",
                "lora_magnitude_vector.weight": "lora_magnitude"}
    trained: set[str] = set()
    for key, value in tensors.items():
        if not key.startswith(PREFIX):
            raise CheckpointError(f"unexpected PEFT tensor name {key} (expected {PREFIX}...)")
        path = key[len(PREFIX):].replace(".default.", ".")
        suffix = next((s for s in suffixes if path.endswith("." + s)), None)
        if suffix is None:  # a modules_to_save tensor: module path + parameter name
            module, _, param = path.rpartition(".")
            name = _rename(module, table, reverse=True)
            if name is None:
                raise CheckpointError(f"PEFT tensor {key} is for a module slmkit does not have")
            ours[f"{name}.{param}"] = value
            trained.add(name)
            continue
        module = path[: -len(suffix) - 1]
        if gpt2 and module.endswith(".attn.c_attn"):
            layer = module.split(".")[2]
            for k, p in enumerate(_QKV):
                name = f"blocks.{layer}.attn.{p}"
                part = suffixes[suffix]
                ours[f"{name}.{part}"] = value if part == "lora_A" else value.chunk(3)[k]
                if name not in modules:
                    modules.append(name)
            continue
        name = _rename(module, table, reverse=True)
        if name is None:
            raise CheckpointError(f"PEFT tensor {key} is for a module slmkit does not have")
        ours[f"{name}.{suffixes[suffix]}"] = value
        if name not in modules:
            modules.append(name)
    if not modules:
        raise CheckpointError("the PEFT adapter holds no LoRA tensors (lora_A/lora_B)")
    lora.targets = [f"re:{re.escape(m)}" for m in modules]
    lora.train_modules = sorted(trained)
    return lora, ours, modules


PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"


def is_peft_dir(path) -> bool:
    return (Path(path) / PEFT_CONFIG).is_file() and (Path(path) / PEFT_WEIGHTS).is_file()


def write_peft_adapter(directory, config: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """adapter_config.json + adapter_model.safetensors into `directory` (created), each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_file(directory / PEFT_WEIGHTS) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    write_text_atomic(directory / PEFT_CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return directory


def read_peft_adapter(directory) -> tuple[dict, dict[str, torch.Tensor]]:
    directory = Path(directory)
    if not is_peft_dir(directory):
        raise CheckpointError(f"{directory} is not a PEFT adapter directory ({PEFT_CONFIG} and {PEFT_WEIGHTS})")
    try:
        config = json.loads((directory / PEFT_CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise CheckpointError(f"{directory / PEFT_CONFIG} is not valid JSON") from None
    return config, read_weights(directory, PEFT_WEIGHTS)


def load_peft_into(model, directory) -> list[str]:
    """Wrap `model` (our Decoder of the adapter's base) with a PEFT adapter's LoRA; returns the modules."""
    config, tensors = read_peft_adapter(directory)
    lora, ours, modules = from_peft(config, tensors, model.config)
    add_lora(model, lora)
    result = model.load_state_dict(ours, strict=False)
    if result.unexpected_keys:
        raise CheckpointError(f"{directory}: tensors this model does not have: {result.unexpected_keys[:3]}")
    return modules
