"""What each Ray Train worker runs: the training loop of one rank, from the model it builds to its reports.

``train_worker`` is the function :func:`musicgen.training.trainer.run_training` hands to
TorchTrainer; it runs in the worker processes, never on the driver:

- data: its equal share of the training split (``get_dataset_shard``), collated and transposed
  per batch; rank 0 also holds the validation split as fixed batches;
- parallelism: the LSTM and Transformer train through a DDP wrapper (``prepare_model``); the
  GAN, whose step has two losses and two optimizers, all-reduces its gradients itself after each
  backward; bf16 autocast on GPU;
- time budget: with ``time_budget_s`` the run times its own first steps and keeps the step count
  that fits (``StepBudget``; rank 0's count on every rank), saved with each checkpoint;
- checkpoints: at each report rank 0 appends to ``metrics.jsonl``, redraws ``loss.png`` and
  writes a checkpoint (a model artifact plus ``trainer_state.pt``, the optimizer state); a
  restarted or rerun worker resumes from the latest one, a fine-tuning run without one starts
  from ``init_from``'s weights.

It is apart from the driver (checks before any worker starts, the n-gram baseline, the
TorchTrainer set-up and the final artifact) so each side reads on its own. The two share only
:func:`model_kwargs`, the model config every worker builds from.
"""

from __future__ import annotations

import os
import tempfile
import time

import torch

from musicgen import storage
from musicgen.config import TrainConfig, from_dict
from musicgen.data.collate import Collate, windows
from musicgen.data.shards import read_split
from musicgen.models import build_model, copy_weights_for_finetuning, load_artifact, read_meta, safe_load, save_artifact
from musicgen.models.distill import distillation_loss
from musicgen.models.lstm import backward_and_step
from musicgen.tokenizers import tokenizer_from_dict
from musicgen.training.loop import StepBudget, append_metrics, evaluate, learning_rate, plot_loss_curves

TRAINER_STATE_FILE = "trainer_state.pt"


def model_kwargs(config: TrainConfig, tokenizer, start_config: dict | None = None) -> dict:
    # the next-token loss learns a plain conditional model whatever it starts from (a distilled one too):
    # only distillation bakes a guidance weight in
    start = {k: v for k, v in (start_config or {}).items() if k != "baked_guidance"}
    kwargs = {**start, "vocab_size": len(tokenizer), "n_styles": len(tokenizer.styles), **config.model_config}
    if config.model == "gan":
        kwargs.setdefault("style_token_offset", tokenizer.first_style_id)
    if config.distill_guidance:
        kwargs["baked_guidance"] = config.distill_guidance
    return kwargs


def train_worker(loop_config: dict) -> None:
    """The per-worker function given to TorchTrainer."""
    import ray.train
    import ray.train.torch

    config = from_dict(TrainConfig, loop_config["config"])
    tokenizer = tokenizer_from_dict(loop_config["tokenizer"])
    run_uri = loop_config["run_uri"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(config.seed + rank)
    if not config.use_gpu:
        torch.set_num_threads(max(1, config.cpus_per_worker))

    # fine-tuning: the sizes come from the artifact; its weights only matter when no checkpoint supersedes them
    start_config = read_meta(config.init_from).config if config.init_from else None
    model = build_model(config.model, **model_kwargs(config, tokenizer, start_config))
    optimizers = model.configure_optimizers(config.lr, config.weight_decay)
    step, epoch, resumed_from, planned = 0, 0, None, None
    checkpoint = ray.train.get_checkpoint()
    # read once: the weights a fine-tune starts from, and a distillation's teacher (models/distill.py)
    source = load_artifact(config.init_from)[0] if config.init_from and (config.distill_guidance or not checkpoint) \
        else None
    if source is not None and not checkpoint:
        copy_weights_for_finetuning(model, source)  # copies the values: the teacher stays as it was
    teacher = source if config.distill_guidance else None
    if checkpoint:
        with checkpoint.as_directory() as folder:
            saved, _ = load_artifact(folder)
            with open(os.path.join(folder, TRAINER_STATE_FILE), "rb") as f:
                state = safe_load(f.read())
        model.load_state_dict(saved.state_dict())
        for key, optimizer in optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        step, epoch = state["step"], state["epoch"]
        resumed_from, planned = step, state.get("planned_steps")
    device = ray.train.torch.get_device()
    model.to(device)
    if teacher is not None:
        teacher.to(device).requires_grad_(False)
    # DDP for the language models (gloo on CPU, NCCL on GPU); the GAN all-reduces its own gradients
    forward = ray.train.torch.prepare_model(model) if world > 1 and model.supports_ddp else None

    collate_train = Collate(loop_config["tokenizer"], config.max_len, config.transpose,
                            seed=config.seed + 1000 * rank + step, data_vocab=loop_config["data_vocab"])
    train_shard = ray.train.get_dataset_shard("train")
    # the validation split is small: rank 0 holds it in memory as fixed batches, evaluated identically each time
    val_batches = (_validation_batches(config, loop_config["tokenizer"], loop_config["data_vocab"], device)
                   if rank == 0 else [])
    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    # a time budget fits the step count once, by this run's own pace; a resumed run keeps what was fitted
    max_steps = planned or config.max_steps
    budget = StepBudget(config.time_budget_s, config.max_steps) if config.time_budget_s and not planned else None

    def report(train_losses: list[float], tokens: int, seconds: float, extra: dict) -> None:
        metrics = {"step": step, "epoch": epoch, "train_loss": sum(train_losses) / max(1, len(train_losses))}
        metrics["lr"] = learning_rate(max(0, step - 1), config.lr, config.warmup_steps, max_steps)
        metrics["max_steps"] = max_steps
        metrics["tokens_per_second_per_worker"] = tokens / seconds if seconds else 0.0
        metrics["tokens_per_second"] = metrics["tokens_per_second_per_worker"] * world
        metrics.update(extra)
        metrics["ngram_bits_per_token"] = loop_config["ngram_bits_per_token"]
        if resumed_from is not None:
            metrics["resumed_from_step"] = resumed_from
        if rank == 0:
            metrics.update(evaluate(model, val_batches, tokenizer.styles))
            history = append_metrics(run_uri, metrics)
            storage.write_bytes(storage.join(run_uri, "loss.png"),
                                plot_loss_curves(history, f"{config.name} ({config.model})"))
            with tempfile.TemporaryDirectory() as folder:
                save_artifact(folder, model, config.model, step=step, epoch=epoch)
                torch.save(
                    {"optimizers": {k: o.state_dict() for k, o in optimizers.items()}, "step": step, "epoch": epoch,
                     "planned_steps": planned},
                    os.path.join(folder, TRAINER_STATE_FILE),
                )
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics, checkpoint=None)

    done = max_steps is not None and step >= max_steps
    while not done and epoch < config.epochs:
        losses, extra, tokens, started = [], {}, 0, time.perf_counter()
        batches = train_shard.iter_torch_batches(
            batch_size=config.batch_size,
            collate_fn=collate_train,
            local_shuffle_buffer_size=4 * config.batch_size,
            local_shuffle_seed=config.seed + epoch,
        )
        for batch in batches:
            batch = _to(batch, device)
            _maybe_fail(config, run_uri, rank, step)
            lr = learning_rate(step, config.lr, config.warmup_steps, max_steps)
            for optimizer in optimizers.values():
                for group in optimizer.param_groups:
                    group["lr"] = lr
            with autocast:
                if teacher is None:
                    out = model.training_step(batch["tokens"], batch["style"], optimizers, step, forward=forward)
                else:
                    out = distillation_step(model, teacher, batch, optimizers["model"], forward)
            losses.append(out["loss"])
            extra = {k: v for k, v in out.items() if k != "loss"}
            tokens += int((batch["tokens"][:, 1:] != 0).sum())
            step += 1
            fitted = budget.tick() if budget is not None else None
            if fitted is not None:
                planned = max_steps = _same_on_every_rank(fitted, world, device)
                budget = None
            done = max_steps is not None and step >= max_steps
            if done or (config.eval_every_steps and step % config.eval_every_steps == 0):
                report(losses, tokens, time.perf_counter() - started, extra)
                losses, tokens, started = [], 0, time.perf_counter()
            if done:
                break
        epoch += 1
        if losses and not done and not config.eval_every_steps:
            report(losses, tokens, time.perf_counter() - started, extra)


def distillation_step(model, teacher, batch: dict, optimizer, forward) -> dict[str, float]:
    """One AdamW step of guidance distillation (the model's own MLE step is replaced, not added to)."""
    model.train()
    loss = distillation_loss(model, teacher, batch["tokens"], batch["style"], forward)
    backward_and_step(loss, model, optimizer, sync=forward is None)
    return {"loss": loss.item()}


def _same_on_every_rank(value: int, world: int, device) -> int:
    """Rank 0's ``value`` on every rank (each timed its own steps; they must stop together)."""
    if world < 2:
        return value
    import torch.distributed as dist

    shared = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(shared, src=0)
    return int(shared.item())


def _validation_batches(config: TrainConfig, tokenizer_config: dict, data_vocab: dict, device) -> list[dict]:
    """The validation split as padded batches of whole melodies, cut into the windows the n-gram
    baseline scores too (``windows``; no transposition)."""
    table = read_split(config.data, "val")
    collate = Collate(tokenizer_config, config.max_len, transpose=0, seed=0, data_vocab=data_vocab)
    rows = [(w, style) for seq, style in zip(table.column("tokens").to_pylist(), table.column("style").to_pylist())
            for w in windows(seq, config.max_len)]
    rows.sort(key=lambda r: len(r[0]))  # similar lengths together: less padding
    if config.val_batches is not None:
        rows = rows[:: max(1, len(rows) // (config.val_batches * config.batch_size))]
    batches = []
    for start in range(0, len(rows), config.batch_size):
        chunk = rows[start : start + config.batch_size]
        batches.append(_to(collate.collate([w for w, _ in chunk], [s for _, s in chunk]), device))
    return batches


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _maybe_fail(config: TrainConfig, run_uri: str, rank: int, step: int) -> None:
    """Chaos testing: rank 0 raises once at the configured step (a marker file makes it once)."""
    if config.inject_failure_at_step != step or rank != 0:
        return
    marker = storage.join(run_uri, "injected_failure")
    if not storage.exists(marker):
        storage.write_bytes(marker, str(step).encode())
        raise RuntimeError(f"injected worker failure at step {step}")
