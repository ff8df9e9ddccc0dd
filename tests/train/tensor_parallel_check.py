"""Run under torchrun (tests/train/test_model_parallel.py does): the gradients of a tensor-parallel decoder equal
the unsharded decoder's, parameter by parameter, for two shapes — a Qwen3-like one (tied head, GQA, QK-norm,
SwiGLU, RMSNorm, sequence parallelism) and a GPT-2-like one (learned positions, LayerNorm, GELU, biases,
untied head, no sequence parallelism). Prints one line per shape and exits non-zero on a mismatch.

Both models start from the same seed, see the same ids and targets; the sharded gradients are gathered whole
(DTensor.full_tensor) and compared with the unsharded ones at atol 1e-6 (float32: only the summation order of
the row-wise matmuls' partial sums differs).
"""

import sys

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import init_device_mesh

from slmkit.model import Decoder, ModelConfig
from slmkit.train.tensor_parallel import apply_tensor_parallel

SHAPES = {
    "qwen3-like": (dict(vocab_size=320, d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=8, d_ff=64,
                        max_seq_len=64, qk_norm=True, tie_embeddings=True), True),
    "gpt2-like": (dict(vocab_size=320, d_model=32, n_layers=2, n_heads=4, d_ff=64, max_seq_len=64, norm="layernorm",
                       mlp="gelu", positions="learned", attn_qkv_bias=True, attn_out_bias=True, mlp_bias=True,
                       tie_embeddings=False), False),
}


def check(name: str, fields: dict, sequence_parallel: bool, mesh) -> float:
    config = ModelConfig(**fields)
    torch.manual_seed(0)
    reference = Decoder(config)
    torch.manual_seed(0)
    sharded = apply_tensor_parallel(Decoder(config), mesh, sequence_parallel)
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (4, 32), generator=generator)
    targets = torch.randint(0, config.vocab_size, (4, 32), generator=generator)
    targets[0, :5] = -100  # ignored targets, as in SFT
    loss, expected = sharded(ids, targets).loss, reference(ids, targets).loss
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-6)
    loss.backward()
    expected.backward()
    worst = 0.0
    mine = dict(sharded.named_parameters())
    for pname, param in reference.named_parameters():
        grad = mine[pname].grad
        grad = grad.full_tensor() if hasattr(grad, "full_tensor") else grad
        assert grad.shape == param.grad.shape, (name, pname)
        worst = max(worst, float((grad - param.grad).abs().max()))
        torch.testing.assert_close(grad, param.grad, rtol=0, atol=1e-6, msg=f"{name}: {pname}")
    return worst


def main() -> int:
    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),), mesh_dim_names=("tp",))
    for name, (fields, sequence_parallel) in SHAPES.items():
        worst = check(name, fields, sequence_parallel, mesh)
        if dist.get_rank() == 0:
            print(f"{name}: gradients match, max abs difference {worst:.2e}", flush=True)
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
