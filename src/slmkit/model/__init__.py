"""The from-scratch decoder for the GPT-2, Llama, Qwen3 and Qwen3-MoE families.

    from slmkit.model import Decoder, ModelConfig, preset, load_model
    model = Decoder(preset("tiny", vocab_size=4096))
    model, info = load_model("runs/demo")          # ours, or a Hugging Face model directory
"""

from slmkit.model.checkpoint import save_pretrained
from slmkit.model.config import ModelConfig
from slmkit.model.counting import (
    count_parameters,
    flops_per_token,
    kv_cache_bytes_per_token,
    training_memory_estimate,
)
from slmkit.model.decoder import Decoder, DecoderOutput
from slmkit.model.kv_cache import KVCache
from slmkit.model.loading import ModelInfo, load_model, read_model_config
from slmkit.model.presets import PRESETS, preset, preset_names

__all__ = [
    "Decoder", "DecoderOutput", "KVCache", "ModelConfig", "ModelInfo", "PRESETS", "count_parameters",
    "flops_per_token", "kv_cache_bytes_per_token", "load_model", "preset", "preset_names", "read_model_config",
    "save_pretrained", "training_memory_estimate",
]
