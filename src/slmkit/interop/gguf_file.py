"""GGUF files for llama.cpp, ollama and LM Studio: `export_gguf` writes one, `import_gguf` reads one back.

    export_gguf(model, tokenizer, "demo.gguf", quant="q8_0")    # f32 | f16 | bf16 | q8_0 | q4_0
    model, tokenizer, arch = import_gguf("demo.gguf")           # dequantized to float32 (or `dtype`)

Written with the `gguf` package (gguf-py, from the llama.cpp project; `pip install 'slmkit[gguf]'`):
architecture keys (gguf_config.py), tensors (gguf_tensors.py), tokenizer keys (gguf_tokenizer.py). As
llama.cpp's converter does, 1-D tensors, norms, the MoE router and position embeddings stay F32, and a
matrix whose rows are not a multiple of the 32-value quantization block is written F16 instead of
Q8_0 / Q4_0. The file is written under a temporary name and renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from slmkit.errors import CheckpointError
from slmkit.fileio import atomic_file
from slmkit.interop.gguf_config import architecture_keys, config_from_keys, gguf_architecture
from slmkit.interop.gguf_tensors import from_gguf_tensors, llama3_scaling_from_rope_freqs, to_gguf_tensors
from slmkit.interop.gguf_tokenizer import tokenizer_from_fields, tokenizer_keys
from slmkit.model.decoder import Decoder

QUANTS = ("f32", "f16", "bf16", "q8_0", "q4_0")
BLOCK = 32  # values per Q8_0 / Q4_0 block
KEEP_F32 = ("_norm.", "ffn_gate_inp.", "position_embd.")


def _gguf():
    try:
        import gguf
    except ImportError:
        raise CheckpointError("GGUF files need the gguf package: pip install 'slmkit[gguf]'") from None
    return gguf


def export_gguf(model, tokenizer, path: str | os.PathLike, quant: str = "f32", name: str | None = None) -> Path:
    """Write `model` (a Decoder) and `tokenizer` as one GGUF file; CheckpointError names what GGUF cannot carry."""
    gguf = _gguf()
    if quant not in QUANTS:
        raise CheckpointError(f"unknown GGUF type {quant!r}; choose one of {', '.join(QUANTS)}")
    if tokenizer is None:
        raise CheckpointError("a GGUF file carries its tokenizer; this model has no tokenizer.json")
    config = model.config
    arch = gguf_architecture(config)
    keys = architecture_keys(config, arch) | tokenizer_keys(tokenizer, config.vocab_size)
    tensors = to_gguf_tensors(model.state_dict(), config, arch)
    path = Path(path)
    with atomic_file(path) as tmp:
        writer = gguf.GGUFWriter(tmp, arch)
        writer.add_name(name or path.stem)
        writer.add_file_type(_file_type(gguf, quant))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for key, value in keys.items():
            _add_key(writer, key, value)
        for tensor_name, array in tensors.items():
            data, qtype = _encoded(gguf, tensor_name, array, quant)
            writer.add_tensor(tensor_name, data, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return path


def _file_type(gguf, quant: str) -> int:
    t = gguf.LlamaFileType
    return {"f32": t.ALL_F32, "f16": t.MOSTLY_F16, "bf16": t.MOSTLY_BF16, "q8_0": t.MOSTLY_Q8_0,
            "q4_0": t.MOSTLY_Q4_0}[quant]


def _add_key(writer, key: str, value) -> None:
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    else:
        writer.add_array(key, list(value))


def _encoded(gguf, name: str, array: np.ndarray, quant: str):
    """(data, ggml type or None for plain float32/float16 arrays) for one tensor."""
    t = gguf.GGMLQuantizationType
    if quant == "f32" or array.ndim == 1 or any(k in name for k in KEEP_F32):
        return array.astype(np.float32), None
    if quant in ("q8_0", "q4_0") and array.shape[-1] % BLOCK:
        quant = "f16"  # llama.cpp cannot quantize such rows either
    if quant == "f16":
        return array.astype(np.float16), None
    qtype = {"bf16": t.BF16, "q8_0": t.Q8_0, "q4_0": t.Q4_0}[quant]
    return gguf.quants.quantize(array.astype(np.float32), qtype), qtype


def read_gguf(path: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray]]:
    """(fields as plain Python values, tensors as float32 numpy arrays in [out, in] order) of a GGUF file."""
    gguf = _gguf()
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"GGUF file not found: {path}")
    try:
        reader = gguf.GGUFReader(path)
    except (ValueError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable GGUF file: {e}") from None
    fields = {name: field.contents() for name, field in reader.fields.items()}
    tensors = {}
    for t in reader.tensors:
        shape = tuple(int(n) for n in reversed(t.shape))  # ne order -> numpy order
        values = gguf.quants.dequantize(t.data, t.tensor_type)
        tensors[t.name] = np.asarray(values, dtype=np.float32).reshape(shape)
    return fields, tensors


def import_gguf(path: str | os.PathLike, device=None, dtype: torch.dtype | None = None):
    """(Decoder in eval mode, Tokenizer, GGUF architecture) from a llama / qwen3 / qwen3moe / gpt2 GGUF file."""
    fields, tensors = read_gguf(path)
    arch = fields.get("general.architecture")
    if arch not in ("llama", "qwen3", "qwen3moe", "gpt2"):
        raise CheckpointError(f"{path}: GGUF architecture {arch!r}; slmkit imports llama, qwen3, qwen3moe and gpt2")
    if "token_embd.weight" not in tensors:
        raise CheckpointError(f"{path} has no token_embd.weight tensor")
    vocab_size = tensors["token_embd.weight"].shape[0]
    output = tensors.get("output.weight")
    tied = output is None or np.array_equal(output, tensors["token_embd.weight"])
    biases = {stem: f"blk.0.{stem}.bias" in tensors for stem in ("attn_q", "attn_output", "ffn_up")}
    config = config_from_keys(fields, arch, vocab_size, tied, biases)
    if "rope_freqs.weight" in tensors and config.rope_scaling == "none":  # llama.cpp's converter wrote it
        config = llama3_scaling_from_rope_freqs(tensors["rope_freqs.weight"], config)
    tokenizer = tokenizer_from_fields(fields)
    model = Decoder.from_tensors(config, from_gguf_tensors(tensors, config, arch), f"{path} ({arch})", device, dtype)
    return model.eval(), tokenizer, arch
