"""The one Trainer: pretraining here, fine-tuning and DPO later; they differ in data and loss, not loops.

    trainer = Trainer(cfg, model, train_data, eval_data=val, tokenizer=tok, tokenizer_dir=data_dir / "tokenizer")
    result = trainer.fit()          # {"status": "finished" | "interrupted" | "time_limit", "step": ..., ...}

One optimizer step: draw the global batch, run `grad_accum` micro-batches of this rank's rows
(gradient sync only on the last under DDP), normalise by the global number of targets, clip,
check finiteness, set the scheduled lr, step. `loss_fn(model, micro_batch) -> (summed loss, extras)`,
`weight_fn(batch) -> loss units in the batch` and `eval_fn(model, autocast_ctx) -> {"val_loss", ...}`
(held-out metrics in place of language-model validation) are the hooks other objectives replace.
"""

from __future__ import annotations

import math
import shutil
import signal
import threading
import time
from pathlib import Path

import torch
from tqdm import tqdm

from slmkit.config import save_config, to_dict
from slmkit.fileio import write_json_atomic
from slmkit.model import Decoder, flops_per_token
from slmkit.errors import ConfigError, SlmError
from slmkit.eval.likelihood import token_byte_lengths
from slmkit.train import checkpointing as ckpt
from slmkit.train.batches import batch_rows, count_targets, lm_loss, micro_batch, to_device
from slmkit.train.distributed import Dist, is_fsdp, no_grad_sync, setup_distributed, unwrap, wrap_model
from slmkit.train.evaluation import evaluate, sample
from slmkit.train.optim import build_optimizer
from slmkit.train.precision import autocast, configure_device, grad_scaler
from slmkit.train.schedules import make_schedule, set_lr
from slmkit.train.model_parallel import check_trainable, parallelize
from slmkit.train.state import full_model_state, gather_state, grad_norm, restore_state, shared_temporary
from slmkit.train.throughput import memory_in_use, peak_flops
from slmkit.train.tracking import Tracker, plot_curves, run_info
from slmkit.train.weights import FullWeights

RUN_STATUS_FILE = "run_status.json"  # {"status": finished | interrupted | time_limit, "step", "max_steps"}


class TrainingDiverged(SlmError):
    """Too many non-finite steps in a row; the last good weights were saved."""


def describe_validation(results: dict) -> str:
    """"val loss 1.2345, ppl 3.44, 1.0123 bits/byte" (or the objective's own val_* numbers) for the log."""
    if "val_ppl" in results:
        return (f"val loss {results['val_loss']:.4f}, ppl {results['val_ppl']:.2f}"
                + (f", {results['val_bpb']:.4f} bits/byte" if "val_bpb" in results else ""))
    return ", ".join(f"{k.removeprefix('val_').replace('_', ' ')} {v:.4f}" for k, v in results.items()
                     if k.startswith("val_") and isinstance(v, float))


class Trainer:
    def __init__(self, cfg, model, train_data, eval_data=None, tokenizer=None, tokenizer_dir=None,
                 loss_fn=None, weight_fn=None, dist: Dist | None = None, device=None, log=print, weights=None,
                 eval_fn=None):
        self.cfg, self.tcfg = cfg, cfg.train
        if dist is None or device is None:
            dist, device = setup_distributed(self.tcfg)
        self.dist, self.device = dist, device
        self.log = log if dist.is_main else (lambda *a, **k: None)
        self.run_dir = Path(self.tcfg.out_dir)
        self.train_data, self.eval_data = train_data, eval_data
        self.tokenizer, self.tokenizer_dir = tokenizer, tokenizer_dir
        self.loss_fn = loss_fn or (lambda m, b: lm_loss(m, b, self.tcfg.loss_chunk_size))
        self.weight_fn = weight_fn or count_targets
        self.eval_fn = eval_fn
        self.weights = weights or FullWeights()  # what checkpoints and the final model hold
        configure_device(self.tcfg, device)

        self.model_config = unwrap(model).config
        unwrap(model).gradient_checkpointing = self.tcfg.gradient_checkpointing or self.model_config.gradient_checkpointing
        self.pipeline, self.local = None, None
        if dist.shape.model_parallel:
            check_trainable(model, loss_fn, dist)
            self.local = parallelize(model.to(device), self.tcfg, dist, device)
            self.model, self.pipeline = self.local.module, self.local.pipeline
        else:
            self.model = wrap_model(model.to(device), self.tcfg, dist, device)
        self.fsdp = is_fsdp(self.model) and not dist.shape.model_parallel  # a mesh autocasts (model_parallel.py)
        self.pp_group = dist.mesh["pp"].get_group() if dist.shape.pp > 1 else None
        self.optimizer = build_optimizer(unwrap(self.model), self.tcfg, device)
        self.params = [p for p in unwrap(self.model).parameters() if p.requires_grad]
        self.scaler = grad_scaler(self.tcfg.precision, device)
        self.schedule = make_schedule(self.tcfg)
        self.rows = self.tcfg.batch_size
        self.rows_per_step = self.rows * self.tcfg.grad_accum * dist.dp_size

        self.step, self.skipped, self.bad_in_row, self.train_seconds = 0, 0, 0, 0.0
        self.best_val_loss, self.last_eval = math.inf, {}
        self._stop_signal: int | None = None
        self.resumed_from = None
        if dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.remove_stale_temporaries(self.run_dir)
        dist.barrier()
        self._resume()
        # compile last: checkpoints are read and written through the plain module either way
        self.forward_model = torch.compile(self.model) if self.tcfg.compile else self.model
        self.byte_lengths = (token_byte_lengths(tokenizer, self.model_config.vocab_size)
                             if tokenizer is not None else None)

    # --- resume --------------------------------------------------------------------------------
    def _resume(self) -> None:
        path = ckpt.resolve_resume(self.tcfg.resume, self.run_dir, log=self.log)
        if path is None:
            if self.tcfg.resume == "auto":
                self.log(f"resume=auto: no valid checkpoint in {self.run_dir / ckpt.CHECKPOINTS}, starting fresh")
            self._clear_old_run()
            return
        state = restore_state(path, self.model, self.optimizer, self.scaler, self.model_config, self.dist,
                              self.weights)
        self.step = int(state["step"])
        self.train_data.load_state_dict(state["data"])
        self.skipped = int(state.get("skipped_steps", 0))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.best_val_loss = state.get("best_val_loss") or math.inf
        self.resumed_from = path
        self.log(f"resumed from {path} (step {self.step})")

    def _clear_old_run(self) -> None:
        """A fresh start must not mix with an earlier run's checkpoints and metrics in the same directory."""
        old = ckpt.list_checkpoints(self.run_dir)
        if old and not self.tcfg.overwrite:
            raise ConfigError(f"{self.run_dir} already holds checkpoints (latest step {old[-1][0]}): continue with "
                              "train.resume=auto, start over with train.overwrite=true, or pick another train.out_dir")
        if self.dist.is_main:
            shutil.rmtree(self.run_dir / ckpt.CHECKPOINTS, ignore_errors=True)
            shutil.rmtree(self.run_dir / "tensorboard", ignore_errors=True)
            (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
        self.dist.barrier()

    # --- one optimizer step --------------------------------------------------------------------
    def train_step(self) -> dict:
        batch = self.train_data.next_batch()
        if batch_rows(batch) != self.rows_per_step:
            raise SlmError(f"the batch source gave {batch_rows(batch)} rows, expected {self.rows_per_step}")
        total_weight = max(self.weight_fn(batch), 1)
        scale = self.dist.dp_size / total_weight  # data-parallel gradients are averaged over dp
        if self.pipeline is not None:
            loss_sum, extras_sum = self._pipeline_step(batch, scale), {}
            self.local.after_backward()
        else:
            loss_sum, extras_sum = self._accumulate(batch, scale)
        total = self.dist.all_reduce_sum([float(loss_sum) if self.dist.reports_loss else 0.0], self.device)[0]
        loss_value = total / total_weight
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        copies = self.local.copies() if self.local is not None else ()
        norm = float(grad_norm(self.params, self.tcfg.grad_clip, self.pp_group, copies))
        lr = self.schedule(self._schedule_step())
        finite = math.isfinite(loss_value) and math.isfinite(norm)
        if finite:
            set_lr(self.optimizer, lr)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
            else:
                self.optimizer.step()
            self.bad_in_row = 0
        else:
            self.skipped += 1
            self.bad_in_row += 1
        if self.scaler is not None:
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return {"loss": loss_value, "lr": lr, "grad_norm": norm, "skipped": not finite, **extras_sum}

    def _accumulate(self, batch, scale: float) -> tuple[torch.Tensor, dict]:
        """Forward and backward of this rank's grad_accum micro-batches; (their summed loss, mean extras)."""
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        extras_sum: dict = {}
        for m in range(self.tcfg.grad_accum):
            micro = to_device(micro_batch(batch, m, self.dist.dp_rank, self.rows, self.dist.dp_size), self.device)
            with no_grad_sync(self.model, m < self.tcfg.grad_accum - 1):
                with autocast(self.tcfg.precision, self.device, self.fsdp):
                    loss, extras = self.loss_fn(self.forward_model, micro)
                scaled = loss * scale
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            loss_sum += loss.detach().double()
            for k, v in extras.items():
                extras_sum[k] = extras_sum.get(k, 0.0) + float(v) / self.tcfg.grad_accum
        return loss_sum, extras_sum

    def _pipeline_step(self, batch, scale: float) -> torch.Tensor:
        """This dp rank's micro-batches through the pipeline (forward and backward); the summed loss on the last
        stage, 0 elsewhere."""
        micros = [micro_batch(batch, m, self.dist.dp_rank, self.rows, self.dist.dp_size)
                  for m in range(self.tcfg.grad_accum)]
        x, y = to_device((torch.cat([m[0] for m in micros]), torch.cat([m[1] for m in micros])), self.device)
        with autocast(self.tcfg.precision, self.device):
            return self.pipeline.run(x, y, scale)

    def _schedule_step(self) -> int:
        """The step the schedule is read at: the optimizer step, or with train.time_schedule the step
        matching the share of train.max_minutes already used, whichever is further."""
        if not self.tcfg.time_schedule:
            return self.step
        used = self.train_seconds / (self.tcfg.max_minutes * 60)
        return max(self.step, min(int(used * self.tcfg.max_steps), self.tcfg.max_steps))

    # --- the loop ------------------------------------------------------------------------------
    def fit(self) -> dict:
        tracker = None
        if self.dist.is_main:
            save_config(self.cfg, self.run_dir / "config.yaml")
            info = run_info(self.device, self.dist.world_size, {"resumed_from": str(self.resumed_from or "")})
            write_json_atomic(self.run_dir / "run_info.json", info)
            tracker = Tracker(self.run_dir, self.tcfg, to_dict(self.cfg), resumed=self.resumed_from is not None)
        self.tracker = tracker
        seq = self.tcfg.seq_len
        tokens_per_step = self.rows_per_step * seq
        flops = flops_per_token(self.model_config, seq)
        peak = peak_flops(self.device, self.tcfg.precision, self.tcfg.tf32, self.tcfg.peak_flops) \
            if self.dist.is_main else None
        bar = tqdm(total=self.tcfg.max_steps, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (self.dist.is_main and self.tcfg.progress))
        status = "finished"
        handlers = self._install_signal_handlers()
        window_start, window_steps, window_time = time.perf_counter(), 0, 0.0
        try:
            if self.step == 0 and self.tcfg.eval_every:
                self._evaluate()
            while self.step < self.tcfg.max_steps:
                t0 = time.perf_counter()
                metrics = self.train_step()
                dt = time.perf_counter() - t0
                self.train_seconds += dt
                window_steps, window_time = window_steps + 1, window_time + dt
                bar.update(1)
                if self.step % self.tcfg.log_every == 0 or self.step == self.tcfg.max_steps:
                    tok_s = window_steps * tokens_per_step / max(window_time, 1e-9)
                    metrics.update(tokens=self.step * tokens_per_step, tokens_per_s=tok_s,
                                   skipped_total=self.skipped, memory_gb=memory_in_use(self.device) / 1e9)
                    if peak:
                        metrics["mfu"] = flops * tok_s / (peak * self.dist.world_size)
                    if tracker:
                        tracker.log(self.step, "train", metrics)
                    bar.set_postfix(loss=f"{metrics['loss']:.3f}", lr=f"{metrics['lr']:.2e}",
                                    tok_s=f"{tok_s:,.0f}", mfu=f"{metrics.get('mfu', 0) * 100:.1f}%",
                                    mem=f"{metrics['memory_gb']:.2f}GB")
                    window_steps, window_time = 0, 0.0
                if self.bad_in_row >= self.tcfg.max_bad_steps:
                    path = self.save_checkpoint()
                    raise TrainingDiverged(
                        f"{self.bad_in_row} non-finite steps in a row at step {self.step} (loss {metrics['loss']}, "
                        f"grad norm {metrics['grad_norm']}); the last good weights are in {path}. Lower train.lr, "
                        "use bf16 instead of fp16, or raise train.max_bad_steps")
                if self.tcfg.eval_every and self.step % self.tcfg.eval_every == 0 and self.step < self.tcfg.max_steps:
                    self._evaluate()
                if (self.tcfg.checkpoint_every and self.step % self.tcfg.checkpoint_every == 0
                        and self.step < self.tcfg.max_steps):
                    self.save_checkpoint()
                stop = self._should_stop()
                if stop:
                    status = stop
                    break
            bar.close()
            if status != "interrupted":  # finished or out of time: the final numbers
                self._evaluate()
            path = self.save_checkpoint()
            self._write_final_model(path)
            if self.dist.is_main:
                # how the run ended, for whoever runs this verb as a step of something longer (slm pipeline):
                # an interrupted run also writes its weights, so their presence does not say it finished
                write_json_atomic(self.run_dir / RUN_STATUS_FILE, {"status": status, "step": self.step,
                                                                   "max_steps": self.tcfg.max_steps})
        finally:
            bar.close()
            self._restore_signal_handlers(handlers)
            if tracker:
                tracker.close()
        plot = plot_curves(self.run_dir) if (self.dist.is_main and self.tcfg.plots) else None
        return {"status": status, "step": self.step, "skipped_steps": self.skipped, "checkpoint": str(path),
                "run_dir": str(self.run_dir), "plot": str(plot) if plot else None, **self.last_eval,
                "train_seconds": self.train_seconds, "wall_seconds": time.perf_counter() - window_start}

    def _write_final_model(self, checkpoint: Path) -> None:
        """The run directory's model files, from the last checkpoint (gathered whole from the ranks when that one
        is sharded: collective)."""
        if self.dist.shape.model_parallel:
            state = full_model_state(self.model, self.dist)
        else:
            state = self.weights.read(checkpoint, self.model_config) if self.dist.is_main else None
        if self.dist.is_main:
            self.weights.write(self.run_dir, state, self.model_config, self.tokenizer_dir)
        self.dist.barrier()

    def _should_stop(self) -> str | None:
        # one collective, so every rank takes the same branch and shares one clock (the mean training time)
        signalled, seconds = self.dist.all_reduce_sum([float(self._stop_signal is not None), self.train_seconds],
                                                      self.device)
        self.train_seconds = seconds / self.dist.world_size
        timed_out = self.tcfg.max_minutes is not None and self.train_seconds >= self.tcfg.max_minutes * 60
        if signalled:
            self.log(f"\nstopping at step {self.step} on a signal: saving a checkpoint "
                     "(continue with train.resume=auto)")
            return "interrupted"
        if timed_out:
            self.log(f"\ntime limit of {self.tcfg.max_minutes} min reached at step {self.step}")
            return "time_limit"
        return None

    # --- evaluation and checkpoints ------------------------------------------------------------
    def _evaluate(self) -> dict:
        if self.dist.shape.model_parallel:  # a full copy of the weights, evaluated by rank 0 alone
            samples = self.tokenizer is not None and self.tcfg.sample_prompts and self.tcfg.sample_tokens
            if self.eval_fn is None and self.eval_data is None and not samples:
                return {}  # nothing to evaluate: no gather
            state = full_model_state(self.model, self.dist)
            if self.dist.is_main:
                if self.model_config.tie_embeddings:
                    state.pop("head.weight", None)  # the embedding, stored once
                eval_model = Decoder.from_tensors(self.model_config, state, "the training run").to(self.device)
                results = self._evaluate_model(eval_model, Dist())
            self.dist.barrier()
            return results if self.dist.is_main else {}
        return self._evaluate_model(unwrap(self.model), self.dist)

    def _evaluate_model(self, eval_model, dist: Dist) -> dict:
        results: dict = {}
        ctx = lambda: autocast(self.tcfg.precision, self.device, self.fsdp)  # noqa: E731
        if self.eval_fn is not None:
            results = self.eval_fn(eval_model, ctx)
        elif self.eval_data is not None:
            results = evaluate(eval_model, self.eval_data, self.device, ctx, self.byte_lengths, dist)
        if "val_loss" in results:  # an RL objective reports rewards instead
            self.best_val_loss = min(self.best_val_loss, results["val_loss"])
            results["best_val_loss"] = self.best_val_loss
        samples = []
        if self.tokenizer is not None and self.tcfg.sample_prompts and self.tcfg.sample_tokens:
            with autocast(self.tcfg.precision, self.device, self.fsdp):
                samples = sample(eval_model, self.tokenizer, self.tcfg.sample_prompts, self.tcfg.sample_tokens,
                                 self.tcfg.sample_temperature, self.tcfg.sample_top_k, self.device,
                                 seed=self.tcfg.seed)
        if self.tracker:
            self.tracker.log(self.step, "eval", {**results, "samples": samples})
            for i, text in enumerate(samples):
                self.tracker.log_text(self.step, f"sample_{i}", text)
        if results:
            self.log(f"\nstep {self.step}: " + describe_validation(results))
        self.last_eval = {**results, "samples": samples, "eval_step": self.step}
        return results

    def save_checkpoint(self) -> Path:
        """Write a checkpoint of the current step (collective: every rank must call it)."""
        path = self.run_dir / ckpt.CHECKPOINTS / ckpt.checkpoint_name(self.step)
        # a model split over a mesh is saved by every rank as DCP shards, into one directory they all see
        sharded = shared_temporary(path, self.dist) if self.dist.shape.model_parallel else None
        model_state, optim_state, rng = gather_state(self.model, self.optimizer, self.dist, sharded)
        if self.dist.is_main:
            evaluated_now = self.last_eval.get("eval_step") == self.step
            state = {
                "tokens": self.step * self.rows_per_step * self.tcfg.seq_len,
                "data": self.train_data.state_dict(),
                "val_loss": self.last_eval.get("val_loss") if evaluated_now else None,
                "val_bpb": self.last_eval.get("val_bpb") if evaluated_now else None,
                "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
                "skipped_steps": self.skipped,
                "train_seconds": self.train_seconds,
                "world_size": self.dist.world_size,
                "mesh": self.dist.shape.describe(),
                "rows_per_step": self.rows_per_step,
            }
            path = ckpt.save_checkpoint(self.run_dir, self.step, model_state, optim_state, rng, state, self.cfg,
                                        self.model_config, self.tokenizer_dir,
                                        self.scaler.state_dict() if self.scaler else None, self.weights, sharded)
            ckpt.prune_checkpoints(self.run_dir, self.tcfg.keep_last, self.tcfg.keep_best)
        self.dist.barrier()
        return path

    # --- signals -------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, frame):
            if self._stop_signal is not None:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            self._stop_signal = signum

        old = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
        return old

    def _restore_signal_handlers(self, old: dict) -> None:
        for sig, handler in old.items():
            signal.signal(sig, handler)
