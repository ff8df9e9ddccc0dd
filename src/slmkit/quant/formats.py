"""Weight quantization formats, written out: quantize and dequantize for int8, int4 and NF4.

int8  per output channel, symmetric: scale = max|w_row| / 127, q = round(w / scale) in [-127, 127].
      Error bound: |w - q*scale| <= scale / 2.
int4  group-wise along the input dimension (group 32 / 64 / 128), asymmetric with an integer zero
      point: scale = (max - min) / 15, zero = round(-min / scale) in [0, 15],
      q = clamp(round(w / scale) + zero, 0, 15), w ~ (q - zero) * scale. Bound: scale / 2 per group.
      Two 4-bit values per byte (element 2j in the low nibble, 2j+1 in the high nibble).
NF4   QLoRA (Dettmers et al. 2023): the flattened weight in blocks of 64, each scaled by its absmax to
      [-1, 1] and rounded to the nearest of 16 "normal float" levels (quantiles of N(0, 1), with an exact
      zero). Double quantization: the per-block absmax constants are themselves quantized to 8 bits in
      blocks of 256 after subtracting their mean (QLoRA uses an 8-bit float code; we use linear int8,
      which has the same 8 bits per constant and a simple bound). 4 + 8/64 + 32/(64*256) ~ 4.127 bits
      per weight. Bound: |w - w_hat| <= absmax * (half the largest gap of the code book) + s2 / 2 * 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# The NF4 code book from the QLoRA paper (appendix E) / bitsandbytes, ascending, exactly 0 at index 7.
NF4_CODE = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
])
NF4_BLOCK = 64
NF4_SCALE_BLOCK = 256
INT4_GROUP_SIZES = (32, 64, 128)


def nf4_code_from_quantiles() -> torch.Tensor:
    """The NF4 levels from their definition (QLoRA section 3, bitsandbytes `create_normal_map`):
    8 positive levels at N(0,1) quantiles of linspace(delta, 1/2, 9)[:-1] mirrored to quantiles near 1,
    7 negative levels from linspace(delta, 1/2, 8)[:-1], plus 0; normalised to [-1, 1]. delta = 1 -
    (1/32 + 1/30)/2 is the quantile offset that makes the extreme levels finite."""
    offset = 1 - 0.5 * (1 / 32 + 1 / 30)

    def ppf(p):
        return torch.special.ndtri(p.double())

    positive = ppf(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    negative = -ppf(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    values = torch.cat([positive, torch.zeros(1, dtype=torch.float64), negative]).sort().values
    return (values / values.abs().max()).float()


# ----------------------------------------------------------------------------- int8

def quantize_int8(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """weight [out, in] -> (q int8 [out, in], scale float32 [out])."""
    w = weight.detach().float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scale


def dequantize_int8(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale.float()[:, None]


# ----------------------------------------------------------------------------- int4

def pack_nibbles(q: torch.Tensor) -> torch.Tensor:
    """uint8 values in [0, 15], last dim even -> uint8 with two per byte (low nibble first)."""
    q = q.to(torch.uint8)
    return q[..., 0::2] | (q[..., 1::2] << 4)


def unpack_nibbles(packed: torch.Tensor) -> torch.Tensor:
    low, high = packed & 0x0F, packed >> 4
    return torch.stack((low, high), dim=-1).flatten(-2)


def quantize_int4(weight: torch.Tensor, group_size: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """weight [out, in] -> (packed uint8 [out, in/2], scale float32 [out, in/g], zero uint8 [out, in/g])."""
    out_features, in_features = weight.shape
    if group_size not in INT4_GROUP_SIZES:
        raise ValueError(f"int4 group size must be one of {INT4_GROUP_SIZES}, got {group_size}")
    if in_features % group_size:
        raise ValueError(f"input size {in_features} is not a multiple of the int4 group size {group_size}")
    w = weight.detach().float().view(out_features, in_features // group_size, group_size)
    low = w.amin(-1).clamp(max=0)  # include 0 so that zero is exactly representable
    high = w.amax(-1).clamp(min=0)
    scale = ((high - low) / 15).clamp(min=1e-12)
    zero = torch.round(-low / scale).clamp(0, 15)
    q = (torch.round(w / scale[..., None]) + zero[..., None]).clamp(0, 15).to(torch.uint8)
    return pack_nibbles(q.view(out_features, in_features)), scale, zero.to(torch.uint8)


def dequantize_int4(packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    q = unpack_nibbles(packed).float()
    out_features, in_features = q.shape
    groups = scale.shape[1]
    q = q.view(out_features, groups, in_features // groups)
    return ((q - zero.float()[..., None]) * scale.float()[..., None]).view(out_features, in_features)


# ----------------------------------------------------------------------------- NF4

@dataclass
class NF4Tensor:
    """An NF4-quantized weight: codes packed two per byte plus double-quantized block scales."""

    codes: torch.Tensor  # uint8 [numel / 2]
    absmax_q: torch.Tensor  # int8 [n_blocks]: (absmax - offset) / scale2, rounded
    scale2: torch.Tensor  # float32 [ceil(n_blocks / 256)]
    offset: torch.Tensor  # float32 [] mean of the block absmax values
    shape: tuple[int, ...]


def quantize_nf4(weight: torch.Tensor, block_size: int = NF4_BLOCK) -> NF4Tensor:
    w = weight.detach().float().reshape(-1)
    if w.numel() % block_size:
        raise ValueError(f"NF4 needs a weight size divisible by the block size {block_size}, got {w.numel()}")
    blocks = w.view(-1, block_size)
    absmax = blocks.abs().amax(-1)
    # Double quantization of the block constants: 8-bit, blocks of 256, after removing their mean.
    offset = absmax.mean()
    centred = absmax - offset
    n = centred.numel()
    pad = (-n) % NF4_SCALE_BLOCK
    groups = torch.nn.functional.pad(centred, (0, pad)).view(-1, NF4_SCALE_BLOCK)
    scale2 = groups.abs().amax(-1).clamp(min=1e-12) / 127.0
    absmax_q = torch.round(groups / scale2[:, None]).clamp(-127, 127).to(torch.int8).view(-1)[:n]
    # Normalise by the constant the decoder will actually use, so the 4-bit codes absorb its error.
    absmax_hat = (_dequantize_absmax(absmax_q, scale2, offset)).clamp(min=1e-12)
    normalised = (blocks / absmax_hat[:, None]).clamp(-1, 1)
    code = NF4_CODE.to(w.device)
    midpoints = (code[1:] + code[:-1]) / 2
    codes = torch.bucketize(normalised, midpoints).to(torch.uint8)  # nearest level
    return NF4Tensor(pack_nibbles(codes.view(-1)), absmax_q, scale2, offset, tuple(weight.shape))


def _dequantize_absmax(absmax_q: torch.Tensor, scale2: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    per_block = scale2.repeat_interleave(NF4_SCALE_BLOCK)[: absmax_q.numel()]
    return absmax_q.float() * per_block + offset


# Both levels of every packed byte at once: one gather per weight byte instead of unpacking nibbles.
_NF4_PAIRS = torch.stack((NF4_CODE[torch.arange(256) & 0x0F], NF4_CODE[torch.arange(256) >> 4]), -1)


def dequantize_nf4(t: NF4Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    absmax = _dequantize_absmax(t.absmax_q, t.scale2, t.offset)
    values = _NF4_PAIRS.to(t.codes.device)[t.codes.long()].view(absmax.numel(), -1) * absmax[:, None]
    return values.view(t.shape).to(dtype)
