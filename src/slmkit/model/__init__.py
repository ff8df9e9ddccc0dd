"""The from-scratch decoder for the GPT-2, Llama, Qwen3 and Qwen3-MoE families.

    from slmkit.model import Decoder, ModelConfig, preset
    model = Decoder(preset("tiny", vocab_size=4096))
    # loading any model directory (ours, Hugging Face, quantized): slmkit.loading.load_model
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
from slmkit.model.presets import PRESETS, preset, preset_names

__all__ = [
    "Decoder", "DecoderOutput", "KVCache", "ModelConfig", "PRESETS", "count_parameters",
    "flops_per_token", "kv_cache_bytes_per_token", "preset", "preset_names",
    "save_pretrained", "training_memory_estimate",
]
