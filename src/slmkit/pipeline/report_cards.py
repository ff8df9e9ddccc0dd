"""The report's data card (sources, filters, dedup, held-out split, token budget) and model card."""

from __future__ import annotations

import json
from pathlib import Path

from slmkit.loading import read_model_config
from slmkit.model import ModelConfig
from slmkit.pipeline.stage_configs import CONFIG_DIR, LEFT_OUT_FILE
from slmkit.model.counting import count_parameters, flops_per_token


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def data_card(root: Path, plots: dict[str, str]) -> list[tuple]:
    manifest = read_json(root / "data" / "manifest.json")
    sources = manifest.get("sources", {})
    total_train = sum(s.get("splits", {}).get("train", {}).get("tokens", 0) for s in sources.values()) or 1
    weights = sum(s["weight"] for s in sources.values()) or 1.0
    rows = []
    for name, s in sources.items():
        cleaning, dedup, splits = s["cleaning"], s.get("dedup_removed", {}), s.get("splits", {})
        train, val = splits.get("train", {}), splits.get("val", {})
        rows.append([name, s["kind"], f"{s['weight'] / weights:.0%}", f"{s['docs_read']:,}",
                     f"{cleaning['docs_in'] - cleaning['docs_out']:,}", f"{dedup.get('exact', 0):,}",
                     f"{dedup.get('near', 0):,}", f"{s['docs_kept']:,}", f"{train.get('tokens', 0):,}",
                     f"{train.get('tokens', 0) / total_train:.0%}", f"{val.get('docs', 0):,} / {val.get('tokens', 0):,}"])
    blocks: list[tuple] = [("h2", "Data card"), ("table", [
        "source", "kind", "weight", "documents read", "removed by cleaning", "exact duplicates", "near duplicates",
        "kept", "training tokens", "token share", "held out (docs / tokens)"], rows)]
    for item in read_json(root / CONFIG_DIR / LEFT_OUT_FILE).get("left_out", []):
        rows.append([item["source"], item["kind"], "left out", "", "", "", "", "", "", "", item["reason"]])
    reasons = _removal_reasons(sources)
    if reasons:
        blocks.append(("p", "Cleaning filters that removed documents: " + ", ".join(
            f"{reason} {count:,}" for reason, count in reasons.items()) + "."))
    splits = manifest.get("splits", {})
    dedup = manifest.get("dedup", {})
    blocks.append(("p", f"Shards: {splits.get('train', {}).get('tokens', 0):,} training tokens in "
                        f"{splits.get('train', {}).get('docs', 0):,} documents, {splits.get('val', {}).get('tokens', 0):,} "
                        f"held-out tokens in {splits.get('val', {}).get('docs', 0):,}; MinHash near-duplicate pairs "
                        f"confirmed: {dedup.get('confirmed_pairs', 0):,}; input {manifest.get('input', {}).get('bytes', 0):,}"
                        f" bytes read in {manifest.get('input', {}).get('seconds', 0)} s."))
    if "data" in plots:
        blocks.append(("img", plots["data"], "documents kept and removed per source, and each source's share of the "
                                             "training tokens"))
    return blocks


def _removal_reasons(sources: dict) -> dict[str, int]:
    reasons: dict[str, int] = {}
    for s in sources.values():
        for reason, count in s["cleaning"].get("removed_docs", {}).items():
            reasons[reason] = reasons.get(reason, 0) + count
    return reasons


def data_plot(plt, root: Path, out: Path) -> str | None:
    sources = read_json(root / "data" / "manifest.json").get("sources", {})
    if not sources:
        return None
    names = list(sources)
    kept = [s["docs_kept"] for s in sources.values()]
    cleaned = [s["cleaning"]["docs_in"] - s["cleaning"]["docs_out"] for s in sources.values()]
    duplicates = [sum(s.get("dedup_removed", {}).values()) for s in sources.values()]
    tokens = [s.get("splits", {}).get("train", {}).get("tokens", 0) for s in sources.values()]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.bar(names, kept, label="kept")
    left.bar(names, cleaned, bottom=kept, label="removed by cleaning")
    left.bar(names, duplicates, bottom=[a + b for a, b in zip(kept, cleaned)], label="duplicates")
    left.set_ylabel("documents")
    left.legend(fontsize=8)
    if sum(tokens):  # manifests from before per-source split counts have none
        right.pie(tokens, labels=names, autopct="%1.0f%%")
        right.set_title("training tokens by source")
    else:
        right.axis("off")
    fig.tight_layout()
    fig.savefig(out / "data.png", dpi=110)
    plt.close(fig)
    return "data.png"


def model_config(root: Path) -> ModelConfig | None:
    if not (root / "pretrain" / "config.json").is_file():
        return None
    return read_model_config(root / "pretrain")


def model_card(root: Path) -> list[tuple]:
    cfg = model_config(root)
    if cfg is None:
        return []
    params = count_parameters(cfg)
    tokenizer = read_json(root / "tokenizer" / "tokenizer.json")
    specials = [t["content"] for t in tokenizer.get("added_tokens", [])]
    rows = [["layers", cfg.n_layers], ["model width (d_model)", cfg.d_model],
            ["attention heads (query / key-value)", f"{cfg.n_heads} / {cfg.n_kv_heads}"], ["head size", cfg.head_dim],
            ["feed-forward width, MLP", f"{cfg.d_ff}, {cfg.mlp}"], ["context (tokens)", cfg.max_seq_len],
            ["positions, norm", f"{cfg.positions}, {cfg.norm}{', QK-norm' if cfg.qk_norm else ''}"],
            ["tied embeddings", cfg.tie_embeddings], ["parameters", f"{params['total']:,}"],
            ["training FLOPs per token", f"{flops_per_token(cfg):,}"],
            ["tokenizer", f"byte-level BPE trained on the curated data, {cfg.vocab_size:,} ids; special tokens "
                          f"{', '.join(specials) or 'none'}"]]
    return [("h2", "Model card"), ("table", ["", "value"], [[str(a), str(b)] for a, b in rows])]
