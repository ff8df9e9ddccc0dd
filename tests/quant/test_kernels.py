"""`linear_kernel`: one interface for dense, fused, quantized and called-as-is projections; each kernel
computes what the modules compute (outputs concatenated), in `matmul` and in the fused residual add."""

import pytest
import torch
from torch import nn

from slmkit.quant import Int4Linear, Int8Linear, NF4Linear
from slmkit.quant.kernels import DenseKernel, ModuleKernel, OpKernel, linear_kernel


def _linears(sizes, bias, seed=0):
    torch.manual_seed(seed)
    return [nn.Linear(64, n, bias=bias) for n in sizes]


def _reference(modules, x):
    with torch.no_grad():
        return torch.cat([m(x).float() for m in modules], -1)


@pytest.mark.parametrize("kind", ["dense", "int8", "int4", "nf4", "mixed"])
@pytest.mark.parametrize("bias", [False, True])
@torch.no_grad()
def test_kernel_equals_the_modules_it_stands_for(kind, bias):
    linears = _linears([32, 16, 16], bias)
    if kind == "dense":
        modules = linears
    elif kind == "mixed":  # different formats cannot be fused: they are called one by one
        modules = [Int8Linear.from_linear(linears[0]), linears[1], NF4Linear.from_linear(linears[2])]
    else:
        make = {"int8": Int8Linear.from_linear, "nf4": NF4Linear.from_linear,
                "int4": lambda m: Int4Linear.from_linear(m, group_size=32)}[kind]
        modules = [make(m) for m in linears]
    kernel = linear_kernel(modules)
    expected_type = {"dense": DenseKernel, "int8": OpKernel, "int4": OpKernel}.get(kind, ModuleKernel)
    assert type(kernel) is expected_type and kernel.out_features == 64
    x = torch.randn(3, 64)
    want = _reference(modules, x)
    tol = dict(rtol=2e-2, atol=2e-2) if kind in ("int8", "int4", "mixed") else dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(kernel.matmul(x), want, **tol)
    out = torch.full((3, 64), float("nan"))
    assert kernel.matmul(x, out=out) is out
    torch.testing.assert_close(out, want, **tol)
    residual = torch.randn(3, 64)
    expected = residual + want
    kernel.add_matmul_(residual, x)
    torch.testing.assert_close(residual, expected, **tol)


def test_int4_layers_with_different_groups_are_not_fused():
    a, b = _linears([32, 32], bias=False)
    modules = [Int4Linear.from_linear(a, group_size=32), Int4Linear.from_linear(b, group_size=64)]
    assert Int4Linear.concat(modules) is None
    kernel = linear_kernel(modules)
    assert type(kernel) is ModuleKernel
    x = torch.randn(2, 64)
    torch.testing.assert_close(kernel.matmul(x), _reference(modules, x))


def test_a_module_can_offer_its_own_kernel():
    """The hook a wrapped projection (e.g. a merged LoRA layer) uses to give the decode step a fast form."""
    base = _linears([16], bias=True)[0]

    class Wrapped(nn.Module):
        in_features, out_features = 64, 16

        def forward(self, x):
            return base(x)

        def as_linear_kernel(self):
            return DenseKernel([base])

    kernel = linear_kernel([Wrapped()])
    assert type(kernel) is DenseKernel
    x = torch.randn(2, 64)
    torch.testing.assert_close(kernel.matmul(x), _reference([base], x))


def test_a_wrapper_with_an_inference_weight_fuses_with_plain_layers():
    """A layer offering inference_weight() (a LoRA projection) joins plain float32 layers in one dense matrix;
    offering None (a quantized base) falls back to calling the modules."""
    first, second = _linears([16, 8], bias=True)
    folded = torch.randn(8, 64)

    class Folded(nn.Module):
        in_features, out_features = 64, 8

        def __init__(self, offer):
            super().__init__()
            self.offer = offer

        def forward(self, x):
            return x @ folded.t() + second.bias

        def inference_weight(self):
            return (folded, second.bias) if self.offer else None

    x = torch.randn(3, 64)
    want = torch.cat([first(x), x @ folded.t() + second.bias], -1)
    fused = linear_kernel([first, Folded(True)])
    assert type(fused) is DenseKernel and fused.out_features == 24
    torch.testing.assert_close(fused.matmul(x), want)
    called = linear_kernel([first, Folded(False)])
    assert type(called) is ModuleKernel
    torch.testing.assert_close(called.matmul(x), want)
