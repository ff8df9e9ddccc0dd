"""Mixture of experts: a top-k router over SwiGLU experts, plus optional always-on shared experts.

Routing is vectorised: the (token, expert) assignments are sorted by expert so each expert runs one
matmul over its contiguous group of tokens (a loop over experts, never over tokens), and the weighted
outputs are scattered back with `index_add_`. The router logits are returned so the decoder can compute
the load-balancing and z losses over all layers (`load_balancing_loss`, `router_z_loss`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slmkit.model.config import ModelConfig
from slmkit.model.mlp import SwiGLU


class Experts(nn.Module):
    """n_experts SwiGLU MLPs stored as stacked weights.

    gate_proj, up_proj: [n_experts, d_ff, d_model]; down_proj: [n_experts, d_model, d_ff]
    (each slice is an nn.Linear-style [out, in] matrix).
    """

    def __init__(self, n_experts: int, d_model: int, d_ff: int):
        super().__init__()
        self.gate_proj = nn.Parameter(torch.empty(n_experts, d_ff, d_model))
        self.up_proj = nn.Parameter(torch.empty(n_experts, d_ff, d_model))
        self.down_proj = nn.Parameter(torch.empty(n_experts, d_model, d_ff))

    def forward(self, x: torch.Tensor, expert_ids: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """x: [tokens, d_model]; expert_ids, weights: [tokens, top_k] -> [tokens, d_model]."""
        n_experts = self.gate_proj.shape[0]
        top_k = expert_ids.shape[1]
        flat_ids = expert_ids.reshape(-1)  # [tokens * top_k]
        order = flat_ids.argsort(stable=True)  # assignments grouped by expert
        token_of = order // top_k  # which token each sorted assignment came from
        counts = torch.bincount(flat_ids, minlength=n_experts).tolist()
        grouped = x[token_of]  # [tokens * top_k, d_model], expert 0's tokens first
        outputs = []
        for e, chunk in enumerate(grouped.split(counts)):
            if chunk.shape[0] == 0:
                continue
            hidden = F.silu(chunk @ self.gate_proj[e].T) * (chunk @ self.up_proj[e].T)
            outputs.append(hidden @ self.down_proj[e].T)
        out = torch.cat(outputs) * weights.reshape(-1)[order, None]
        return torch.zeros_like(x).index_add_(0, token_of, out)


class MoE(nn.Module):
    """Routed experts (+ shared experts): [batch, seq, d_model] -> ([batch, seq, d_model], router logits)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.top_k = config.moe_top_k
        self.norm_topk_prob = config.moe_norm_topk_prob
        self.router = nn.Linear(config.d_model, config.n_experts, bias=False)
        self.experts = Experts(config.n_experts, config.d_model, config.moe_d_ff)
        self.shared = (
            SwiGLU(config.d_model, config.moe_d_ff * config.n_shared_experts) if config.n_shared_experts else None
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the output and the router logits [batch * seq, n_experts] (for the auxiliary losses)."""
        batch, seq, d_model = x.shape
        flat = x.reshape(-1, d_model)
        router_logits = self.router(flat)
        weights, expert_ids = route(router_logits, self.top_k, self.norm_topk_prob)
        out = self.experts(flat, expert_ids, weights.to(x.dtype))
        if self.shared is not None:
            out = out + self.shared(flat)
        return out.view(batch, seq, d_model), router_logits


def route(router_logits: torch.Tensor, top_k: int, normalize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over experts (in float32), keep the top_k; optionally renormalise them to sum to 1.

    router_logits: [tokens, n_experts] -> (weights [tokens, top_k] float32, expert ids [tokens, top_k]).
    """
    probs = F.softmax(router_logits, dim=-1, dtype=torch.float32)
    weights, expert_ids = torch.topk(probs, top_k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights, expert_ids


def load_balancing_loss(router_logits: list[torch.Tensor], top_k: int, token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Switch-Transformer balance loss over all MoE layers, as Hugging Face Qwen3-MoE computes it.

    loss = n_experts * sum_e f_e * P_e, where f_e is the share of top-k assignments that went to expert e
    (summing to top_k) and P_e the mean router probability of e, both pooled over layers and real tokens.
    It is 1·top_k for perfectly uniform routing and grows as routing concentrates.
    router_logits: one [tokens, n_experts] tensor per layer; token_mask: [batch, seq] (1 = real token).
    """
    n_experts = router_logits[0].shape[-1]
    device = router_logits[0].device
    mask = None if token_mask is None else token_mask.reshape(-1).to(device=device, dtype=torch.float32)
    assignments = torch.zeros(n_experts, device=device)
    prob_sum = torch.zeros(n_experts, device=device)
    rows = torch.zeros((), device=device)
    for logits in router_logits:
        probs = F.softmax(logits.float(), dim=-1)
        chosen = torch.topk(probs, top_k, dim=-1).indices  # [tokens, top_k]
        w = torch.ones(chosen.shape[0], device=device) if mask is None else mask
        assignments = assignments.scatter_add(0, chosen.reshape(-1), w.repeat_interleave(top_k))
        prob_sum = prob_sum + (probs * w[:, None]).sum(0)
        rows = rows + w.sum()
    return n_experts * torch.sum((assignments / rows) * (prob_sum / rows))


def router_z_loss(router_logits: list[torch.Tensor], token_mask: torch.Tensor | None = None) -> torch.Tensor:
    """ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2, averaged over layers.

    It keeps router logits small, which keeps the softmax (and bf16 training) numerically stable.
    """
    losses = []
    for logits in router_logits:
        z = torch.logsumexp(logits.float(), dim=-1).pow(2)  # [tokens]
        if token_mask is None:
            losses.append(z.mean())
        else:
            w = token_mask.reshape(-1).to(z)
            losses.append((z * w).sum() / w.sum().clamp(min=1))
    return torch.stack(losses).mean()
