"""Generation and quantization benchmark: slmkit's engine vs transformers' `generate` on the same weights.

    .venv/bin/python benchmarks/bench_generate.py          # writes benchmarks/results/generate.md|json

1. Decode tokens/s, batch 1, greedy, KV cache on both sides: the GUIDE's 4.2M config and a ~43M one
   (random weights, exported to Hugging Face with slmkit.interop; same ids in, same work), at 1 torch
   thread and at the machine default, both sides always with the same count; plus sampling
   (temperature 0.8, top-p 0.9) on the 4.2M config. Load-independent evidence: torch calls per token
   (torch.profiler, top-level aten ops) for both sides.
2. Batched throughput at batch 8 (prompts of different lengths; HF left-pads).
3. Quantized decode on CPU for the ~43M model, trained here on TinyStories (a plain loop, bf16
   autocast, a fixed wall-clock budget, cached under benchmarks/.cache/ so reruns reuse it) so that
   perplexities mean something: fp32 vs int8 / int4 / NF4, each quantized model saved with
   save_quantized and loaded back with load_model (what `slm quantize` + `slm generate` run).
4. Speculative decoding: that 43M target with a 4.2M draft trained (and cached) the same way on the same
   text and tokenizer; k picked by measurement.

    .venv/bin/python benchmarks/bench_generate.py --train-only   # fill the cache, nothing else
    .venv/bin/python benchmarks/bench_generate.py --trained-only # quantized + speculative rows, printed
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, ab_median, write_results  # noqa: E402

from slmkit.infer import Generator, SpeculativeGenerator  # noqa: E402
from slmkit.interop.hf_export import export_hf  # noqa: E402
from slmkit.model import Decoder, preset  # noqa: E402
from slmkit.quant import quantize_model, quantized_nbytes, save_quantized  # noqa: E402
from slmkit.eval import document_loglikelihoods  # noqa: E402

DEFAULT_THREADS = torch.get_num_threads()
THREADS = int(os.environ.get("BENCH_THREADS", "1"))  # for the batched / quantized / speculative rows
TRAIN_SECONDS = float(os.environ.get("BENCH_TRAIN_SECONDS", "720"))  # target; the draft gets a third
# One thread by default: on a CPU shared with other work, two threads made each training step ~15x slower
# (every parallel region waits for a descheduled second thread); set BENCH_TRAIN_THREADS on an idle machine.
TRAIN_THREADS = int(os.environ.get("BENCH_TRAIN_THREADS", "1"))
CACHE = Path(__file__).resolve().parent / ".cache"
NEW_TOKENS = 128
QUANT_TOKENS = 32
torch.set_num_threads(THREADS)
TMP = Path(tempfile.mkdtemp(prefix="bench-generate-"))


def config_4m(vocab=4096):
    return preset("tiny", vocab_size=vocab)


def config_43m(vocab=4096):
    return preset("tiny", vocab_size=vocab, d_model=512, n_layers=13, n_heads=8, n_kv_heads=4, d_ff=1536)


def hf_copy(model, name):
    import transformers

    export_hf(model, TMP / name)
    return transformers.AutoModelForCausalLM.from_pretrained(TMP / name).eval()


def aten_calls_per_token(fn, tokens: int) -> float:
    """Top-level aten ops per generated token (torch.profiler): what each step dispatches, load-free."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(1 for e in prof.events() if e.cpu_parent is None and e.name.startswith("aten::")) / tokens


def decode_pair(model, label, rows, hf=None, threads=1, repeats=3, sample=False, count_ops=False):
    """Batch-1 decode tokens/s, slmkit vs HF, alternating, both at `threads` torch threads."""
    torch.set_num_threads(threads)
    hf = hf or hf_copy(model, label.split()[0])
    prompt = torch.randint(0, model.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    gen = Generator(model, eos_ids=set())
    opts = dict(temperature=0.8, top_p=0.9, seed=0) if sample else dict(temperature=0)
    hf_opts = dict(do_sample=True, temperature=0.8, top_p=0.9, top_k=0) if sample else dict(do_sample=False)

    def ours():
        return gen.generate(prompt[0].tolist(), max_new_tokens=NEW_TOKENS, ignore_eos=True, **opts)

    def theirs():
        with torch.inference_mode():
            return hf.generate(prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS, pad_token_id=0,
                               eos_token_id=None, **hf_opts)

    ours(), theirs()  # warm-up
    same = None if sample else ours().token_ids == theirs()[0, 16:].tolist()
    t = ab_median({"slmkit": ours, "transformers": theirs}, repeats)
    row = dict(benchmark=f"decode {label}, batch 1 {'sampling t=0.8 top-p 0.9' if sample else 'greedy'}, "
                         f"{threads} thread{'s' if threads > 1 else ''}",
               params_m=round(model.num_parameters() / 1e6, 1), threads=threads,
               slmkit_tok_s=NEW_TOKENS / t["slmkit"], transformers_tok_s=NEW_TOKENS / t["transformers"],
               ratio=t["transformers"] / t["slmkit"], same_tokens=same)
    if count_ops:
        row["slmkit_calls_per_token"] = aten_calls_per_token(ours, NEW_TOKENS)
        row["transformers_calls_per_token"] = aten_calls_per_token(theirs, NEW_TOKENS)
    rows.append(row)
    torch.set_num_threads(THREADS)
    return hf


def batched_pair(model, hf, rows, batch=8, new=64):
    g = torch.Generator().manual_seed(1)
    lengths = [4, 9, 16, 7, 12, 5, 14, 10][:batch]
    prompts = [torch.randint(1, model.config.vocab_size, (n,), generator=g).tolist() for n in lengths]
    gen = Generator(model, eos_ids=set(), max_batch=batch)
    width = max(lengths)
    ids = torch.zeros(batch, width, dtype=torch.long)
    mask = torch.zeros(batch, width, dtype=torch.long)
    for i, p in enumerate(prompts):  # left padding
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1

    def ours():
        gen.generate(prompts, max_new_tokens=new, temperature=0, ignore_eos=True)

    def theirs():
        with torch.inference_mode():
            hf.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                        pad_token_id=0, eos_token_id=None)

    ours(), theirs()
    t = ab_median({"slmkit": ours, "transformers": theirs}, 3)
    rows.append(dict(benchmark=f"throughput batch {batch} greedy (4.2M), {THREADS} thread", params_m=4.2,
                     threads=THREADS,
                     slmkit_tok_s=batch * new / t["slmkit"], transformers_tok_s=batch * new / t["transformers"],
                     ratio=t["transformers"] / t["slmkit"]))


def train_briefly(model, ids, seconds, batch=8, seq=128, lr=1e-3, warmup=20):
    """A plain loop (AdamW, bf16 autocast) for `seconds` of wall time: linear warm-up, then a cosine decay
    to lr/10 that follows the elapsed fraction of the budget. Returns (model, steps, last mean loss)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0, betas=(0.9, 0.95))
    data = torch.tensor(ids)
    g = torch.Generator().manual_seed(0)
    steps, start, losses = 0, time.perf_counter(), []
    while (elapsed := time.perf_counter() - start) < seconds:
        progress = elapsed / seconds
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (steps + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
        starts = torch.randint(0, len(data) - seq - 1, (batch,), generator=g)
        x = torch.stack([data[s:s + seq] for s in starts])
        y = torch.stack([data[s + 1:s + seq + 1] for s in starts])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(x, y).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        steps += 1
    return model.eval(), steps, sum(losses[-20:]) / max(1, len(losses[-20:]))


def perplexity(model, ids: list[int], eos: int) -> float:
    """Token perplexity of `ids` as one document (slmkit.eval.likelihood's definition, 256-token windows)."""
    ll = document_loglikelihoods(model, [ids], eos, min(256, model.config.max_seq_len))[0]
    return math.exp(-ll / len(ids))


def tokenizer_and_data():
    """The 4096-token BPE trained on the TinyStories 2 MiB head (cached), train ids, 8192 validation ids."""
    from slmkit.tokenizer import load_tokenizer, train_bpe

    train_file = SHARED_DATA / "tinystories" / "tinystories_train_head_2MiB.txt"
    valid_file = SHARED_DATA / "tinystories" / "tinystories_validation_head_hf.txt"
    tok_dir = CACHE / "tokenizer-4096"
    if (tok_dir / "tokenizer.json").is_file():
        tok = load_tokenizer(tok_dir)
    else:
        tok = train_bpe([str(train_file)], vocab_size=4096)
        tok.save(tok_dir)
    train_ids = tok.encode(train_file.read_text(encoding="utf-8"))
    valid_ids = tok.encode(valid_file.read_text(encoding="utf-8"))[:8192]
    return tok, tok_dir, train_ids, valid_ids


def trained(name, config, train_ids, tok_dir, seconds, lr):
    """A model trained by train_briefly, from benchmarks/.cache/ when an identical run was cached.

    The cache key covers the config, the budget, the learning rate and the tokenizer; meta.json keeps
    the steps and final training loss reached (they depend on the machine's load at training time)."""
    from slmkit.loading import load_model

    spec = dict(config=config.to_dict(), seconds=seconds, lr=lr, batch=8, seq=128, schedule="warmup20-cosine",
                threads=TRAIN_THREADS,
                tokenizer=(tok_dir / "tokenizer.json").read_text(encoding="utf-8"))
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    directory = CACHE / f"{name}-{key}"
    if (directory / "meta.json").is_file():
        model, _ = load_model(directory)
        return model.eval(), json.loads((directory / "meta.json").read_text()), directory
    threads = torch.get_num_threads()
    torch.set_num_threads(TRAIN_THREADS)
    torch.manual_seed(0)
    model, steps, loss = train_briefly(Decoder(config), train_ids, seconds, lr=lr)
    torch.set_num_threads(threads)
    model.save_pretrained(directory, tokenizer_dir=tok_dir)
    meta = dict(steps=steps, seconds=seconds, lr=lr, train_loss=round(loss, 4),
                trained_at=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    (directory / "meta.json").write_text(json.dumps(meta, indent=2))
    return model, meta, directory


def trained_pair(train_ids, tok, tok_dir):
    target = trained("target-43m", config_43m(tok.vocab_size), train_ids, tok_dir, TRAIN_SECONDS, 1.5e-3)
    draft = trained("draft-4m", config_4m(tok.vocab_size), train_ids, tok_dir, TRAIN_SECONDS / 3, 3e-3)
    return target, draft


def decode_speed(model, tokens=QUANT_TOKENS):
    gen = Generator(model, eos_ids=set())
    run = lambda: gen.generate(list(range(1, 17)), max_new_tokens=tokens, temperature=0, ignore_eos=True)  # noqa: E731
    run()
    return gen, run


def outcome_notes(rows) -> list[str]:
    """Run-specific notes: the quantized rows against the goals, and the two-thread caveat."""
    notes = []
    q = {r["benchmark"].split()[3]: r for r in rows if r["benchmark"].startswith("quantized decode")}
    if {"int8", "int4", "nf4"} <= set(q):
        notes.append(
            f"quantized vs goals in this run: int8 {q['int8']['ratio']:.2f}x fp32 decode (goal 2x), int4 "
            f"{q['int4']['ratio']:.2f}x; perplexity {q['int8']['ppl_change_pct']:+.2f}% (int8, goal <= +1%), "
            f"{q['int4']['ppl_change_pct']:+.2f}% (int4) and {q['nf4']['ppl_change_pct']:+.2f}% (NF4; goal <= +5%). "
            f"int8 {'meets' if q['int8']['ratio'] >= 2 else 'misses'} the speed goal here and is near it at best: "
            "torch's _weight_int8pack_mm takes ~3/4 of an int8 step (profiled) and "
            "runs a one-row product only 1.2-1.7x faster than the fp32 matrix-vector product; int8 x int8 (_int_mm) "
            "measured 2-3x faster again per matmul, but it needs activations quantized too (not weight-only)")
    two = [r for r in rows if r["benchmark"].startswith("decode 43M") and r.get("threads", 1) > 1]
    if two and two[0]["ratio"] < 1:
        notes.append(
            "2-thread rows: with other work holding a core, every multi-threaded torch op waits for a "
            "descheduled second thread (training in this benchmark ran ~15x slower at 2 threads than at 1 under "
            "the same load), so these rows measure the contention more than either engine; the 1-thread rows "
            "are the comparison")
    return notes


def main():
    if "--train-only" in sys.argv:
        tok, tok_dir, train_ids, _ = tokenizer_and_data()
        for model, meta, directory in trained_pair(train_ids, tok, tok_dir):
            print(directory, meta)
        return
    rows, notes = [], []
    quick = "--trained-only" in sys.argv  # only the trained-model rows, printed, not written
    torch.manual_seed(0)
    if not quick:
        small = Decoder(config_4m()).eval()
        big = Decoder(config_43m()).eval()
        hf_small = hf_big = None
        for threads in sorted({1, DEFAULT_THREADS}):
            hf_small = decode_pair(small, "4.2M (GUIDE tiny)", rows, hf_small, threads, count_ops=threads == 1)
            hf_big = decode_pair(big, "43M", rows, hf_big, threads)
        decode_pair(small, "4.2M (GUIDE tiny)", rows, hf_small, 1, sample=True)
        batched_pair(small, hf_small, rows)
        del hf_big

    # ---- quantization on a trained >= 40M model, through saved-and-reloaded quantized checkpoints
    from slmkit.loading import load_model

    tok, tok_dir, train_ids, valid_ids = tokenizer_and_data()
    (target, target_meta, target_dir), (draft, draft_meta, _) = trained_pair(train_ids, tok, tok_dir)
    ppl_fp32 = perplexity(target, valid_ids, tok.eos_id)
    notes.append(f"target / quantization model: 43M params trained {target_meta['steps']} steps (batch 8 x 128 "
                 f"tokens, AdamW lr {target_meta['lr']:g} with warm-up and cosine decay, bf16 autocast, "
                 f"{target_meta['seconds']:.0f}s at {TRAIN_THREADS} thread(s) on the shared CPU, cached in "
                 f"benchmarks/.cache/) on the TinyStories 2 MiB head with a 4096-token BPE; final training loss "
                 f"{target_meta['train_loss']:.2f}, "
                 f"fp32 validation perplexity {ppl_fp32:.2f} on 8192 validation tokens. Still far from "
                 "converged (a TinyStories model of this size reaches perplexity ~3-5): the perplexity changes "
                 "are measured on this model, a converged one may react differently")
    fp32_bytes = quantized_nbytes(target)
    runs = {"fp32": decode_speed(target)[1]}
    quantized = {}
    for method in ("int8", "int4", "nf4"):
        m, _ = load_model(target_dir)
        quantize_model(m, method, group_size=64)
        save_quantized(m, TMP / method, tokenizer_dir=tok_dir)
        del m
        q, _ = load_model(TMP / method)  # what `slm generate` loads: float tensors fp32 on CPU
        ppl = perplexity(q, valid_ids, tok.eos_id)
        quantized[method] = (q, ppl, quantized_nbytes(q))
        gen, runs[method] = decode_speed(q)
        quantized[method] += (gen.runner.fast is not None,)
    t = ab_median(runs, 5)
    for method, (q, ppl, nbytes, fast) in quantized.items():
        rows.append(dict(benchmark=f"quantized decode 43M {method} vs fp32 (saved + reloaded checkpoint)",
                         params_m=43.0, threads=THREADS,
                         slmkit_tok_s=QUANT_TOKENS / t[method], fp32_tok_s=QUANT_TOKENS / t["fp32"],
                         ratio=t["fp32"] / t[method],
                         ppl_fp32=ppl_fp32, ppl_quant=ppl, ppl_change_pct=(ppl / ppl_fp32 - 1) * 100,
                         size_mb=nbytes / 1e6, fp32_size_mb=fp32_bytes / 1e6, fast_path=fast))
    del quantized, runs

    # ---- speculative decoding: trained 43M target, trained 4.2M draft, greedy; k by measurement
    prompt = tok.encode("Once upon a time, there was a little")
    plain = Generator(target, eos_ids=set())
    results = {}

    def timed_runs(k):
        spec = SpeculativeGenerator(target, draft, k=k, eos_ids=set())

        def run_plain():
            results["plain"] = plain.generate(prompt, max_new_tokens=NEW_TOKENS, temperature=0, ignore_eos=True)

        def run_spec():
            results[k] = spec.generate(prompt, max_new_tokens=NEW_TOKENS, temperature=0, ignore_eos=True)

        run_plain(), run_spec()
        return {"plain": run_plain, f"k={k}": run_spec}

    ks = (2, 3, 4, 6)
    runs = {}
    for k in ks:
        runs.update(timed_runs(k))
    t = ab_median(runs, 3)
    best = min(ks, key=lambda k: t[f"k={k}"])
    for k in ks:
        rows.append(dict(benchmark=f"speculative greedy, 43M target + 4.2M draft, k={k}"
                                   f"{' (fastest k)' if k == best else ''}",
                         params_m=43.0, threads=THREADS,
                         slmkit_tok_s=NEW_TOKENS / t[f"k={k}"], fp32_tok_s=NEW_TOKENS / t["plain"],
                         ratio=t["plain"] / t[f"k={k}"], acceptance=results[k].acceptance_rate,
                         same_tokens=results[k].token_ids == results["plain"].token_ids))
    notes.append(f"draft: 4.2M params (GUIDE tiny) trained {draft_meta['steps']} steps (lr {draft_meta['lr']:g}, "
                 f"{draft_meta['seconds']:.0f}s, final training loss {draft_meta['train_loss']:.2f}) on the same text "
                 f"and tokenizer; prompt 'Once upon a time, there was a little', {NEW_TOKENS} greedy tokens; "
                 "acceptance = accepted draft tokens / proposed; fp32_tok_s = the target decoding alone; k = draft "
                 "tokens per verification, all measured in one alternating run")
    notes.append("speculative rows, honestly: with this budget the 43M target gets ~3x fewer steps than the 4.2M "
                 "draft and ends with a HIGHER training loss than the draft, so the two models often disagree "
                 "(acceptance well under 1 at every k) and each verification is a (k+1)-token forward of the "
                 "target through the general path, dearer than the target's one-token fast step on this CPU; "
                 "greedy output equals plain decoding (same_tokens) but the speed-up stays below 1 for this "
                 "pair. A speed-up needs a target trained well past its draft (acceptance ~0.7+), which this "
                 "benchmark's CPU budget does not reach")
    notes += [
        f"threads: each decode row runs both sides at the stated torch thread count (1, and the machine "
        f"default {DEFAULT_THREADS}); the other rows use {THREADS} (BENCH_THREADS). The CPU is shared with "
        "other work, so only the ratios (same run, alternating A/B, median of 3) are signal",
        "calls_per_token: top-level aten ops per generated token under torch.profiler (prefill amortised), "
        "independent of machine load",
        "sampling row: both sides sample (different random streams), so tokens are not compared",
        "batch 8 row: prompts of 4-16 tokens (HF left-pads); slmkit decodes all rows with one call of the "
        "runner's B-row one-token path per step (per-row positions, masked attention), prefill per request",
        "quantized rows: each method quantizes the trained target, saves it with save_quantized and loads it "
        "back with load_model, as `slm quantize` then `slm generate` do; the float tensors load as fp32 on CPU "
        "(the quantized layers cast activations to bf16 for torch's kernels), so the one-token fast path runs "
        "(fast_path); median of 5 alternating runs of 32 greedy tokens after a 16-token prompt",
        "ratio = slmkit speed / reference speed (transformers generate, fp32 slmkit, or plain decoding)",
        "goals: decode >= 3x transformers on 4.2M, >= 1.5x on ~40M; int8 and int4 >= 2x fp32 decode with "
        "perplexity +<=1% (int8) and +<=5% (int4, NF4)",
        "int8 / int4 matmuls run torch's CPU kernels (_weight_int8pack_mm, _weight_int4pack_mm_for_cpu) on bf16 "
        "activations; NF4 has no torch CPU kernel and runs by dequantizing each layer per call (memory, not "
        "speed, is its point)",
    ]
    notes += outcome_notes(rows)
    if quick:
        for row in rows:
            print(row)
        print("\n".join(notes))
        return
    write_results("generate", "Generation: slmkit engine vs transformers generate; quantized decode", rows, notes)


if __name__ == "__main__":
    main()
