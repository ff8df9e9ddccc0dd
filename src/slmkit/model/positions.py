"""Position information: rotary embeddings (with linear / NTK / YaRN context scaling) and the fixed
sinusoidal table. Learned positions are a plain `nn.Embedding` in the decoder.

RoPE here uses the "rotate half" layout of Hugging Face Llama/Qwen checkpoints: the head dimension is
split into two halves that rotate together, rather than interleaved pairs.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from slmkit.model.config import ModelConfig


def rope_inverse_frequencies(config: ModelConfig) -> tuple[torch.Tensor, float]:
    """The per-pair rotation speeds [head_dim // 2] and the attention scale applied to cos/sin.

    - none:   theta^(-2i/d)
    - linear: positions divided by the factor (all frequencies slowed down equally)
    - ntk:    static NTK-aware scaling; the base grows to theta * factor^(d/(d-2)) so high frequencies
              stay nearly intact while low ones stretch over the longer context
    - yarn:   YaRN (arXiv:2309.00071): interpolate low frequencies, keep high ones, ramp in between,
              and scale cos/sin by 0.1*ln(factor)+1 (same formula as Hugging Face `rope_type: yarn`)
    - llama3: Llama 3.1's rule: wavelengths longer than original/low_freq_factor are divided by the
              factor, shorter than original/high_freq_factor are kept, a smooth blend in between
    """
    dim = config.head_dim
    base = config.rope_theta
    factor = config.rope_scaling_factor
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim  # float32, as HF computes it
    if config.rope_scaling == "ntk":
        base = base * factor ** (dim / (dim - 2))
    inv_freq = 1.0 / (base**exponents)
    if config.rope_scaling == "none" or config.rope_scaling == "ntk":
        return inv_freq, 1.0
    if config.rope_scaling == "linear":
        return inv_freq / factor, 1.0
    if config.rope_scaling == "llama3":
        return _llama3(config, inv_freq, factor), 1.0
    return _yarn(config, inv_freq, base, dim, factor)


def _llama3(config: ModelConfig, inv_freq: torch.Tensor, factor: float) -> torch.Tensor:
    original = config.rope_original_max_seq_len or config.max_seq_len
    low, high = config.rope_low_freq_factor, config.rope_high_freq_factor
    wavelength = 2 * math.pi / inv_freq
    scaled = torch.where(wavelength > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelength - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelength >= original / high) & (wavelength <= original / low)
    return torch.where(medium, blended, scaled)


def _yarn(config: ModelConfig, inv_freq: torch.Tensor, base: float, dim: int, factor: float):
    original = config.rope_original_max_seq_len or config.max_seq_len

    def correction_dim(rotations: float) -> float:
        # The pair index whose wavelength fits `rotations` times into the original context.
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(correction_dim(config.rope_yarn_beta_fast)), 0)
    high = min(math.ceil(correction_dim(config.rope_yarn_beta_slow)), dim - 1)
    if low == high:
        high += 0.001  # avoid dividing by zero in the ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # 1 -> extrapolate (keep the frequency), 0 -> interpolate (divide by factor)
    scaled = inv_freq / factor * (1 - keep) + inv_freq * keep
    attention_scale = 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0
    return scaled, attention_scale


class RotaryEmbedding(nn.Module):
    """Computes cos/sin for given positions; `apply_rotary` rotates queries and keys with them."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        inv_freq, self.attention_scale = rope_inverse_frequencies(config)
        # Not persistent: it is derived from the config, so checkpoints need not carry it.
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def _apply(self, fn, recurse=True):
        # model.to(bfloat16) would round the frequencies (and so every angle) to 8 bits of mantissa;
        # recompute them in float32 on the new device instead.
        super()._apply(fn, recurse)
        if not self.inv_freq.is_meta:
            self.inv_freq = rope_inverse_frequencies(self.config)[0].to(self.inv_freq.device)
        return self

    def forward(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """positions: [batch or 1, seq] integer -> (cos, sin), each [batch or 1, seq, head_dim]."""
        angles = positions[..., None].float() * self.inv_freq.float()
        angles = torch.cat((angles, angles), dim=-1)
        return (angles.cos() * self.attention_scale).to(dtype), (angles.sin() * self.attention_scale).to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x: [batch, heads, seq, head_dim] by cos/sin: [batch or 1, seq, head_dim]."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos[:, None] + rotated * sin[:, None]


def sinusoidal_embedding(positions: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """The fixed table of "Attention Is All You Need": [batch or 1, seq] -> [batch or 1, seq, dim].

    Even channels hold sin(pos / 10000^(2i/dim)), odd channels the matching cos.
    """
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, dim, 2, device=positions.device).float() / dim))
    angles = positions[..., None].float() * inv_freq
    table = torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)
    return table.to(dtype)
