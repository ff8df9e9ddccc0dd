"""Weight-only quantization written in the project: int8 (per channel), int4 (group-wise with zero
points) and NF4 (QLoRA, double-quantized scales); quantized Linear layers with torch's fast kernels
where they exist; a quantized checkpoint format that `slmkit.loading.load_model` reads directly; the `LinearKernel`
interface (kernels.py) through which the one-token decode step calls every projection.

    from slmkit.quant import quantize_model, save_quantized
    quantize_model(model, "int4", group_size=64)
    save_quantized(model, "runs/demo-int4", tokenizer_dir="runs/demo")
"""

from slmkit.quant.checkpoint import (
    QUANT_FORMAT, QUANT_FORMAT_VERSION, load_quantized, quantize_model, quantized_nbytes, read_quantized_config,
    save_quantized,
)
from slmkit.quant.formats import (
    NF4_CODE, dequantize_int4, dequantize_int8, dequantize_nf4, nf4_code_from_quantiles, quantize_int4,
    quantize_int8, quantize_nf4,
)
from slmkit.quant.linear import METHODS, Int4Linear, Int8Linear, NF4Linear, QuantLinear

__all__ = [
    "METHODS", "NF4_CODE", "QUANT_FORMAT", "QUANT_FORMAT_VERSION", "Int4Linear", "Int8Linear", "NF4Linear",
    "QuantLinear", "dequantize_int4", "dequantize_int8", "dequantize_nf4", "load_quantized",
    "nf4_code_from_quantiles", "quantize_int4", "quantize_int8", "quantize_model", "quantize_nf4",
    "quantized_nbytes", "read_quantized_config", "save_quantized",
]
