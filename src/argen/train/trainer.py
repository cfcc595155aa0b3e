"""The one training loop for every model: tokenizer, AR transformer, refiner, classifier, Prologue stage 1.

A *task* says what to train (see `Task`); the trainer owns everything else: data order, optimizers and
schedules, mixed precision, accumulation, clipping, DDP, EMA, logging, sample grids, checkpoints and
exact resume. Randomness is re-seeded from (seed, step, global micro-batch index) before every loss, so
an interrupted run resumes bit-exactly and 2 ranks x 1 micro-batch equal 1 rank x 2 micro-batches. Each rank
reads only its own micro-batches, through DataLoader workers when asked (argen.data.loader), each batch's
augmentations seeded the same way: the data, too, is the same for any number of workers and after a resume.
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from argen import distributed
from argen.config import TrainConfig, to_dict
from argen.data.loader import BatchRequest, Dataset, StreamedDataset, load_batches
from argen.io import checkpoint as ckpt
from argen.io.video import save_preview
from argen.precision import training_precision
from argen.train.preview import Preview
from argen.train.run_state import (
    CheckpointFolder,
    TrainingError,
    check_resumable,
    drop_log_after,
    rng_state,
    set_rng_state,
)

LOG_FILE = "log.jsonl"
DATA_STREAM = 1  # the seed stream of data augmentations, apart from the losses' (stream 0)


class Task:
    """What the trainer trains, and every hook its loop calls: a task defines `modules` and `loss`; the hooks do
    nothing unless it defines them."""

    tokens_per_sample: int | None = None  # tokens one sample feeds the model, for the logged tokens/s

    def modules(self) -> dict[str, nn.Module]:
        """Trained modules, one optimizer each, updated in this order; the first is the saved model."""
        raise NotImplementedError

    def loss(
        self, name: str, modules: dict[str, nn.Module], batch: dict[str, torch.Tensor], step: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss that updates modules[name] and the floats to log."""
        raise NotImplementedError

    def after_step(self, modules: dict[str, nn.Module], step: int) -> dict[str, float]:
        """Work after each optimizer step (e.g. dead-code restarts), and the floats it logs."""
        return {}

    def preview(self, model: nn.Module) -> Preview | None:
        """What the model makes now, every train.sample_every steps (rank 0); the trainer writes it into the run
        folder (samples/step-N.png, and a GIF for videos)."""
        return None


@dataclass
class TrainResult:
    step: int
    out_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per step (rank 0)


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warmup, then constant, or a cosine or linear decay to min_lr_ratio * lr."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    span = max(1, config.steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    floor = config.lr * config.min_lr_ratio
    if config.schedule == "cosine":
        return floor + (config.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if config.schedule == "linear":
        return floor + (config.lr - floor) * (1 - progress)
    raise TrainingError(f"unknown schedule {config.schedule!r}; use 'constant', 'cosine' or 'linear'")


def make_optimizer(module: nn.Module, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on weights of >= 2 dims only (not on norms, biases or 1-d gains)."""
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=config.lr, betas=config.betas, fused=device.type == "cuda"
    )


def step_seed(seed: int, step: int, micro_batch: int, stream: int = 0) -> int:
    entropy = [seed, step, micro_batch] + ([stream] if stream else [])
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


class Trainer:
    """Train `task` on `dataset`; `run_config` (a dataclass tree) is saved with every checkpoint."""

    def __init__(
        self,
        task: Task,
        dataset: Dataset,
        train_config: TrainConfig,
        run_config: Any,
        kind: str,
        context: distributed.DistributedContext | None = None,
        progress: bool = True,
        metadata: dict[str, Any] | None = None,
        num_workers: int = 0,
    ):
        self.task, self.dataset, self.config = task, dataset, train_config
        self.num_workers = num_workers
        self.metadata = metadata or {}  # written into config.json beside the config (e.g. the tokenizer used)
        self.run_config, self.kind = run_config, kind
        self.context = context or distributed.DistributedContext()
        self.progress = progress
        self.out_dir = Path(train_config.out_dir)
        self.checkpoints = CheckpointFolder(self.out_dir)
        if train_config.fsdp and (train_config.ema_decay > 0 or train_config.sample_every > 0):
            raise TrainingError(
                "train.fsdp=true does not support train.ema_decay > 0 or train.sample_every > 0 "
                "yet (both need the whole model on one rank); set them to 0 or use DDP"
            )
        self.modules = task.modules()
        if not self.modules:
            raise TrainingError("the task has no modules to train")
        self.model_name = next(iter(self.modules))
        if train_config.init_from:
            ckpt.load_state_into(
                self.modules[self.model_name], ckpt.load_weights(train_config.init_from), train_config.init_from
            )
        for module in self.modules.values():
            module.to(self.context.device)
            if train_config.activation_checkpointing:
                _checkpoint_blocks(module)
        self.wrapped = {name: self._wrap(module) for name, module in self.modules.items()}
        if train_config.compile:
            self.wrapped = {name: torch.compile(module) for name, module in self.wrapped.items()}
        # Model FLOPs per token of the saved model (6 N: forward and backward), for the logged TFLOP/s.
        self.flops_per_token = 6 * sum(p.numel() for p in self.modules[self.model_name].parameters())
        self.tokens_per_sample = task.tokens_per_sample
        self.optimizers = {
            name: make_optimizer(module, train_config, self.context.device) for name, module in self.modules.items()
        }
        self.ema = None
        if train_config.ema_decay > 0:
            self.ema = {k: v.detach().clone().float() for k, v in self.modules[self.model_name].state_dict().items()}
        self.step = 0
        self.micro_batch, self.accumulation = self._batch_split()
        # "auto": bf16 autocast where this machine runs it faster, else fp32 (logged with every record)
        self.precision = (
            training_precision(self.context.device.type) if train_config.precision == "auto" else train_config.precision
        )

    # ---------------------------------------------------------------------------------------
    # set-up

    @property
    def sharded(self) -> bool:
        """FSDP (train.fsdp under torchrun): parameters, gradients and optimizer state split across ranks."""
        return self.config.fsdp and self.context.enabled

    def _wrap(self, module: nn.Module) -> nn.Module:
        if not self.context.enabled or not any(p.requires_grad for p in module.parameters()):
            return module
        if self.sharded:
            from torch.distributed.fsdp import fully_shard

            # One unit per transformer block (gathered just in time), then the rest of the module.
            for block in getattr(module, "layers", []):
                fully_shard(block)
            fully_shard(module)
            return module
        device_ids = [self.context.device.index] if self.context.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    def _batch_split(self) -> tuple[int, int]:
        config, world = self.config, self.context.world_size
        per_step = config.batch_size // (world * config.grad_accum)
        if per_step * world * config.grad_accum != config.batch_size or per_step == 0:
            raise TrainingError(
                f"train.batch_size={config.batch_size} must be a positive multiple of "
                f"world size ({world}) x train.grad_accum ({config.grad_accum})"
            )
        if config.batch_size > len(self.dataset):
            raise TrainingError(
                f"train.batch_size={config.batch_size} is larger than the dataset ({len(self.dataset)} samples)"
            )
        return per_step, config.grad_accum

    def _global_indices(self, step: int) -> torch.Tensor:
        """The global batch of `step`: a slice of the epoch's seeded permutation (drop-last epochs)."""
        batch = self.config.batch_size
        per_epoch = len(self.dataset) // batch
        epoch, position = divmod(step, per_epoch)
        generator = torch.Generator().manual_seed(step_seed(self.config.seed, epoch, -1 & 0xFFFF))
        order = torch.randperm(len(self.dataset), generator=generator)
        return order[position * batch : (position + 1) * batch]

    def _requests(self):
        """This rank's micro-batches, from the current step to the last, each with its augmentation seed."""
        world, rank = self.context.world_size, self.context.rank
        for step in range(self.step, self.config.steps):
            chunks = self._global_indices(step).view(self.accumulation, world, self.micro_batch)[:, rank]
            for index, chunk in enumerate(chunks):
                yield BatchRequest(chunk, step_seed(self.config.seed, step, index * world + rank, DATA_STREAM))

    # ---------------------------------------------------------------------------------------
    # checkpoints

    @property
    def checkpoint_dir(self) -> Path:
        return self.checkpoints.path

    def _full_states(self) -> tuple[dict[str, dict], dict[str, dict]]:
        """Unsharded module and optimizer states (a collective under FSDP: every rank calls it)."""
        if not self.sharded:
            return (
                {name: m.state_dict() for name, m in self.modules.items()},
                {name: opt.state_dict() for name, opt in self.optimizers.items()},
            )
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return (
            {name: get_model_state_dict(m, options=options) for name, m in self.modules.items()},
            {
                name: get_optimizer_state_dict(self.modules[name], opt, options=options)
                for name, opt in self.optimizers.items()
            },
        )

    def save(self) -> Path:
        """Write the whole checkpoint by the run folder's swap (argen.train.run_state.CheckpointFolder)."""
        module_states, optimizer_states = self._full_states()
        if self.context.is_main:

            def fill(folder: Path) -> None:
                ckpt.save_checkpoint(
                    folder,
                    self.kind,
                    to_dict(self.run_config),
                    module_states[self.model_name],
                    extra={**self.metadata, "step": self.step},
                )
                if self.ema is not None:
                    ckpt.save_weights(folder / "ema.safetensors", self.ema)
                ckpt.save_trainer_state(
                    folder,
                    {
                        "step": self.step,
                        "modules": {name: state for name, state in module_states.items() if name != self.model_name},
                        "optimizers": optimizer_states,
                        "ema": self.ema,
                        "rng": rng_state(),
                    },
                )

            self.checkpoints.write(fill)
        distributed.barrier(self.context)
        return self.checkpoint_dir

    def resume(self) -> bool:
        """Load the newest complete checkpoint of out_dir, if there is one; refuse one written with another
        config, except a longer train.steps (extending a run)."""
        if self.context.is_main:
            self.checkpoints.restore_newest()
        distributed.barrier(self.context)
        if not self.checkpoints.complete:
            return False
        directory = self.checkpoint_dir
        state = ckpt.load_trainer_state(directory)
        check_resumable(
            directory,
            ckpt.read_meta(directory, self.kind)["config"],
            self.run_config,
            int(state["step"]),
            self.config.steps,
        )
        module_states = {**state["modules"], self.model_name: ckpt.load_weights(directory)}
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_model_state_dict,
                set_optimizer_state_dict,
            )

            options = StateDictOptions(full_state_dict=True)
            for name, module in self.modules.items():
                set_model_state_dict(module, module_states[name], options=options)
                set_optimizer_state_dict(module, self.optimizers[name], state["optimizers"][name], options=options)
        else:
            ckpt.load_state_into(self.modules[self.model_name], module_states.pop(self.model_name), str(directory))
            for name, module_state in module_states.items():
                self.modules[name].load_state_dict(module_state)
            for name, optimizer_state in state["optimizers"].items():
                self.optimizers[name].load_state_dict(optimizer_state)
        self.ema = state["ema"]
        self.step = int(state["step"])
        set_rng_state(state["rng"])
        return True

    # ---------------------------------------------------------------------------------------
    # the loop

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.context.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _update(self, name: str, batches: list[dict[str, torch.Tensor]], lr: float) -> dict[str, float]:
        """Accumulate the gradients of `name`'s loss over the micro-batches, clip, step."""
        optimizer = self.optimizers[name]
        for module in self.modules.values():
            module.zero_grad(set_to_none=True)
        logs: dict[str, float] = {}
        for index, batch in enumerate(batches):
            global_micro = index * self.context.world_size + self.context.rank
            torch.manual_seed(step_seed(self.config.seed, self.step, global_micro))
            last = index == len(batches) - 1
            wrapped = self.wrapped[name]
            if self.sharded and hasattr(wrapped, "set_requires_gradient_sync"):
                wrapped.set_requires_gradient_sync(last)  # reduce-scatter only on the last micro-batch
            sync = (
                wrapped.no_sync()
                if isinstance(wrapped, DistributedDataParallel) and not last
                else contextlib.nullcontext()
            )
            with sync:
                with self._autocast():
                    loss, values = self.task.loss(name, self.wrapped, batch, self.step)
                (loss / len(batches)).backward()
            for key, value in {f"{name}_loss": loss.detach().float(), **values}.items():
                logs[key] = logs.get(key, 0.0) + float(value) / len(batches)
        if self.config.grad_clip > 0:
            norm = torch.nn.utils.clip_grad_norm_(self.modules[name].parameters(), self.config.grad_clip)
            logs[f"{name}_grad_norm"] = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.step()
        return logs

    def _throughput(self, samples_per_s: float) -> dict[str, float]:
        """images/s (samples), tokens/s and model TFLOP/s of the whole run (all ranks), and peak memory."""
        record = {"images_per_s": round(samples_per_s, 2)}
        if self.tokens_per_sample:
            tokens = samples_per_s * self.tokens_per_sample
            record.update(tokens_per_s=round(tokens, 1), model_tflops=round(tokens * self.flops_per_token / 1e12, 4))
        if self.context.device.type == "cuda":
            record["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(self.context.device) / 2**30, 3)
        else:  # the process's peak resident memory (Linux reports KiB)
            record["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
        return record

    def _check_finite(self, logs: dict[str, float]) -> None:
        keys = sorted(logs)
        values = distributed.all_reduce_mean(torch.tensor([logs[k] for k in keys], dtype=torch.float64), self.context)
        for key, value in zip(keys, values.tolist()):
            logs[key] = value
        bad = [k for k, v in logs.items() if not math.isfinite(v) and k.endswith("_loss")]
        if bad:
            last = self.checkpoint_dir if self.checkpoint_dir.exists() else "none written yet"
            raise TrainingError(
                f"non-finite loss at step {self.step} ({', '.join(f'{k}={logs[k]}' for k in bad)}); the run "
                f"stopped without saving. Last good checkpoint: {last}. Lower train.lr, enable train.grad_clip, "
                f"or check the data."
            )

    def _update_ema(self) -> None:
        # Warmed up, as timm's ModelEmaV2: (1 + t) / (10 + t) caps the decay of update t, so the initial weights
        # do not linger (a flat 0.995 still kept 0.995 ** 500 = 8 % of them after a 500-step demo run).
        decay = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        with torch.no_grad():
            for key, value in self.modules[self.model_name].state_dict().items():
                if value.is_floating_point():
                    self.ema[key].lerp_(value.float(), 1 - decay)
                else:
                    self.ema[key].copy_(value)

    def _write_preview(self) -> None:
        model = self.modules[self.model_name]
        preview = self.task.preview(model)
        model.train()
        if preview is not None:
            save_preview(preview.images, self.out_dir / "samples" / f"step-{self.step:07d}.png", preview.columns)

    def fit(self, resume: bool = True, stop_after: int | None = None) -> TrainResult:
        """Train to train.steps (or stop early after `stop_after` steps, to test resuming)."""
        if resume:
            self.resume()
        config, context = self.config, self.context
        result = TrainResult(self.step, self.out_dir)
        log_path = self.out_dir / LOG_FILE
        if context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            drop_log_after(log_path, self.step)
        bar = tqdm(
            total=config.steps,
            initial=self.step,
            desc=f"train {self.kind}",
            unit="step",
            disable=not (self.progress and context.is_main),
            dynamic_ncols=True,
        )
        for module in self.modules.values():
            module.train()
        started, window_start, samples_seen = time.perf_counter(), time.perf_counter(), 0
        pin_memory = context.device.type == "cuda"
        if isinstance(self.dataset, StreamedDataset):
            batches_in = self.dataset.stream(
                config.seed,
                self.step * self.accumulation,
                self.micro_batch,
                context.rank,
                context.world_size,
                self.num_workers,
                pin_memory,
            )
        else:
            batches_in = load_batches(self.dataset, self._requests(), self.num_workers, pin_memory)
        while self.step < config.steps and (stop_after is None or self.step < stop_after):
            batches = [
                {k: v.to(context.device, non_blocking=True) for k, v in next(batches_in).items()}
                for _ in range(self.accumulation)
            ]
            lr = learning_rate(config, self.step)
            logs: dict[str, float] = {"lr": lr}
            for name in self.modules:
                logs.update(self._update(name, batches, lr))
            logs.update(self.task.after_step(self.modules, self.step))
            self._check_finite(logs)
            if self.ema is not None:
                self._update_ema()
            self.step += 1
            samples_seen += config.batch_size
            bar.update(1)
            if context.is_main:
                result.history.append({"step": self.step, **logs})
                if self.step % config.log_every == 0 or self.step == config.steps:
                    now = time.perf_counter()
                    record = {
                        "step": self.step,
                        **logs,
                        "precision": self.precision,
                        "elapsed_s": round(now - started, 3),
                        **self._throughput(samples_seen / max(now - window_start, 1e-9)),
                    }
                    with log_path.open("a") as handle:
                        handle.write(json.dumps(record) + "\n")
                    window_start, samples_seen = now, 0
                    bar.set_postfix({k: f"{v:.4g}" for k, v in logs.items() if k.endswith("_loss")})
            if config.sample_every and self.step % config.sample_every == 0 and context.is_main:
                self._write_preview()
            if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                self.save()
        bar.close()
        batches_in.close()  # stops the workers
        result.step = self.step
        return result


def run(
    run_config: Any,
    kind: str,
    dataset: Dataset,
    build_task: Callable[[], Task],
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    num_workers: int = 0,
) -> Path:
    """One training run, single process or under torchrun: join the process group, seed, build the task (so
    its initial weights follow train.seed), fit (resuming from train.out_dir when a checkpoint is there), leave
    the group. Returns the checkpoint directory."""
    context = distributed.setup()
    trainer = None
    try:
        torch.manual_seed(run_config.train.seed)
        trainer = Trainer(
            build_task(), dataset, run_config.train, run_config, kind, context, progress, metadata, num_workers
        )
        trainer.fit()
        return trainer.checkpoint_dir
    finally:
        # The DDP wrapper's reducer holds the process group: free it (reference cycles too) before the group is
        # destroyed, not during interpreter exit, where gloo's threads once aborted a finished rank (SIGABRT).
        trainer = None
        gc.collect()
        distributed.teardown(context)


def _checkpoint_blocks(module: nn.Module) -> None:
    """Activation checkpointing of every transformer block of `module` (`module.layers`): its activations are
    recomputed in the backward pass instead of stored, for a larger batch in the same memory."""
    layers = getattr(module, "layers", None)
    if layers is None:
        raise TrainingError(
            f"train.activation_checkpointing needs a model of transformer blocks; {type(module).__name__} has none"
        )
    for index, block in enumerate(layers):
        layers[index] = checkpoint_wrapper(block)
