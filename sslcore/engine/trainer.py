"""The training loop on HuggingFace Accelerate: one process, several GPUs, several machines or TPU."""

from __future__ import annotations

import json
import math
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from sslcore.components.attacks import build_attack
from sslcore.components.dual_bn import has_dual_batchnorm
from sslcore.console import out
from sslcore.data.decoded_cache import cached_rows
from sslcore.engine import agreement, checkpoint, run_dir, trackers
from sslcore.engine.collapse import CollapseGuard
from sslcore.engine.compute import channels_last, compile_networks, eager
from sslcore.engine.data import EpochSampler, TrainingViews
from sslcore.engine.optim import StepSchedule, build_optimizer
from sslcore.engine.curves import plot_curves
from sslcore.engine.run_log import MetricsLog, write_summary
from sslcore.engine.step import step_seed, train_step
from sslcore.engine.views import ready_views, training_collate
from sslcore.errors import SslcoreError
from sslcore.evaluation.monitor import monitored_network
from sslcore.method import Batch, Method, MethodOutput, MethodParts, StepInfo
from sslcore.plugins import PluginHost
from sslcore.recipe import Recipe, resolve

TRAIN_SPLIT = "train"
EVAL_SPLIT = "test"


class TrainingState:
    """The loop's own counters, saved with every checkpoint: the step, and the loss window open at that step (each
    process's loss sum since the last record, and the number of steps), so a resumed run logs the same means; and
    the samples of corrupt rows every process skipped (``[data] corrupt = "skip"``) up to that step."""

    def __init__(self) -> None:
        self.step = 0
        self.loss_sums: list[float] = []
        self.loss_steps = 0
        self.corrupt_rows = 0

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "loss_sums": self.loss_sums, "loss_steps": self.loss_steps,
                "corrupt_rows": self.corrupt_rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.loss_sums = [float(total) for total in state.get("loss_sums", [])]
        self.loss_steps = int(state.get("loss_steps", 0))
        self.corrupt_rows = int(state.get("corrupt_rows", 0))


class LossWindow:
    """The losses since the last record, kept on the device so that a step never waits for it: this process's sum
    and the first step of the window (1-based) whose loss was not finite."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.restore()

    def restore(self, sums: Sequence[float] = (), steps: int = 0, rank: int = 0, world: int = 1) -> None:
        """Open a window, empty or as a checkpoint saved it (``sums``: each process's; a run resumed on another
        number of processes carries their total on process 0)."""
        own = sums[rank] if len(sums) == world else (sum(sums) if rank == 0 else 0.0)
        self.total = torch.tensor(own, dtype=torch.float32, device=self.device)
        self.steps = steps
        self.first_bad = torch.tensor(math.inf, device=self.device)

    def add(self, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self.steps += 1
        self.total += loss
        self.first_bad = torch.minimum(self.first_bad, torch.where(torch.isfinite(loss), math.inf, float(self.steps)))

    def gather(self, accelerator: Accelerator, stop: bool) -> tuple[list[float], int | None, bool]:
        """Every process's sum, the first non-finite step on any process (None if all were finite), and whether any
        process was asked to stop. Waits for the device: one gather over processes."""
        flag = torch.tensor(float(stop), device=self.device)
        rows = accelerator.gather(torch.stack([self.total, self.first_bad, flag])[None]).cpu()
        bad = rows[:, 1].min().item()
        return rows[:, 0].tolist(), None if math.isinf(bad) else int(bad), bool(rows[:, 2].any())


class StopRequest:
    """Turns SIGTERM / SIGINT into a flag, so the run can save and exit cleanly: one process stops after the current
    step, several after the next log or checkpoint step (where they agree on it without waiting every step)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        self.signal = signum

    def __exit__(self, *_exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


class Interrupted(Exception):
    """Raised after a signal-triggered checkpoint; carries the exit code."""

    def __init__(self, signum: int, step: int) -> None:
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} after step {step}; checkpoint saved, "
                         "run the same command again to resume")


class Trainer:
    """Builds everything a recipe names and runs it to the end, resuming where a previous run stopped."""

    def __init__(self, recipe: Recipe, host: PluginHost, accelerator: Accelerator | None = None) -> None:
        self.recipe = recipe
        self.host = host
        run = recipe.run
        self.run_dir = Path(run.output_dir) / run.name
        self.accelerator = accelerator or Accelerator(
            mixed_precision=run.mixed_precision,
            kwargs_handlers=[DistributedDataParallelKwargs(broadcast_buffers=False)],
            **trackers.accelerator_options(run.trackers, self.run_dir),
        )
        set_seed(run.seed, deterministic=run.deterministic)
        world = self.accelerator.num_processes
        if run.batch_size % world:
            checkpoint.raise_once(self.accelerator, SslcoreError(
                f"run.batch_size = {run.batch_size} does not divide over {world} processes",
                where=recipe.source,
                hint=f"use a multiple of {world}",
            ))
        self.local_batch = run.batch_size // world
        data = recipe.require("data", needed_by="training")
        self.train_data = data.build(split=TRAIN_SPLIT)
        self.steps_per_epoch = len(self.train_data) // run.batch_size
        if self.steps_per_epoch == 0:
            raise SslcoreError(
                f"the training set has {len(self.train_data)} samples, fewer than one batch of {run.batch_size}",
                where=f"{recipe.source} [run.batch_size]",
                hint="lower run.batch_size or use more data",
            )
        by_epochs = run.epochs * self.steps_per_epoch if run.epochs is not None else None
        self.total_steps = min(s for s in (by_epochs, run.steps) if s is not None)

        parts = MethodParts(recipe, num_samples=len(self.train_data), total_steps=self.total_steps,
                            steps_per_epoch=self.steps_per_epoch)
        method = recipe.components["method"].build(parts=parts)
        self.attack = build_attack(parts) if parts.has("attack") else None
        parts.check_all_used()
        if not isinstance(method, Method):
            raise SslcoreError(f"method '{recipe.components['method'].kind}' did not build an sslcore.Method")
        if self.attack is None and has_dual_batchnorm(method):
            raise SslcoreError("a backbone has dual_bn = true but the recipe has no [attack]: its auxiliary BatchNorms "
                               "would see no input", hint="add an [attack] table, or set dual_bn = false")
        if world > 1 and run.sync_batchnorm and self.accelerator.device.type != "cpu":
            # torch's SyncBatchNorm runs on accelerators only; CPU (gloo) runs keep per-process statistics.
            method = torch.nn.SyncBatchNorm.convert_sync_batchnorm(method)
        if run.channels_last:
            method = method.to(memory_format=torch.channels_last)
        if run.compile:
            compile_networks(method)  # before the optimizer and DDP see the method; its parameter names stay
        optimizer = build_optimizer(method, recipe.optimizer, run.batch_size)
        self.schedule = StepSchedule(recipe.schedule, self.total_steps, self.steps_per_epoch)

        self.sampler = EpochSampler(len(self.train_data), self.steps_per_epoch * run.batch_size, seed=run.seed)
        rows = cached_rows(self.train_data, data.config, self.accelerator, workers=run.num_workers)  # [data] cache
        views = TrainingViews(rows, recipe.require("views", needed_by="training").build(), seed=run.seed,
                              defer_faults=world > 1)  # a corrupt row stops all processes together (agreement)
        loader = DataLoader(
            views,
            batch_size=self.local_batch,
            sampler=self.sampler,
            num_workers=run.num_workers,
            collate_fn=training_collate(views.transform, self.accelerator.device),
            drop_last=True,
            pin_memory=self.accelerator.device.type == "cuda",
            persistent_workers=run.num_workers > 0,
        )
        self.model, self.optimizer, self.loader = self.accelerator.prepare(method, optimizer, loader)
        self.method: Method = self.accelerator.unwrap_model(self.model)
        self.state = TrainingState()
        self.accelerator.register_for_checkpointing(self.state)
        for updater in {id(f.updater): f.updater for f in self.method.followers()}.values():
            self.accelerator.register_for_checkpointing(updater)  # the engine keeps every target updater's state
        self.evaluator = recipe.components["eval"].build() if "eval" in recipe.components else None
        self._eval_data: Any = None
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl")
        self.collapse = CollapseGuard(self.method)

    # -- evaluation --------------------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Run the recipe's evaluator on the online backbone (main process; the others wait, and stop with it on a
        user error such as a corrupt test row)."""
        if self.evaluator is None:
            return {}
        results: dict[str, float] = {}
        failure: SslcoreError | None = None
        if self.accelerator.is_main_process:
            was_training = self.method.training
            try:
                if self._eval_data is None:
                    self._eval_data = self.recipe.components["data"].build(split=EVAL_SPLIT)
                network = monitored_network(self.method, self.evaluator)
                with eager(self.method):
                    results = self.evaluator.evaluate(network, self.train_data, self._eval_data,
                                                      self.accelerator.device)
            except SslcoreError as error:
                failure = error
            self.method.train(was_training)
        agreement.raise_first(self.accelerator, failure)  # every process waits here
        return results

    # -- the loop ----------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train to the end, holding the run directory (:mod:`sslcore.engine.run_dir`: its lock, and the checks
        that nothing it holds is lost)."""
        with run_dir.claim(self.accelerator, self.recipe, self.run_dir, self.host):
            return self._fit()

    def _fit(self) -> dict[str, Any]:
        acc = self.accelerator
        run = self.recipe.run
        resume_from = checkpoint.restore(acc, self.run_dir, run.resume, self.method)
        if self.state.step >= self.total_steps and (self.run_dir / "summary.json").is_file():
            if acc.is_main_process:
                out.print(f"run already finished at step {self.state.step}; results: {self.run_dir / 'summary.json'}"
                          " (set run.resume=never or another run.name to train again)")
            return json.loads((self.run_dir / "summary.json").read_text())
        trackers.start(acc, run.name, self.recipe.to_dict(), self.run_dir, self.state.step)
        every_eval = run.evaluation_interval(self.total_steps) if self.evaluator is not None else 0
        initial: dict[str, float] = {}
        if resume_from is not None:
            if acc.is_main_process:
                self.metrics.truncate_after(self.state.step)
                initial = _initial_evaluation(self.metrics.read())
            out.print(f"resumed from {resume_from} at step {self.state.step}") if acc.is_main_process else None
        else:
            if acc.is_main_process:
                self.metrics.truncate_after(-1)
            initial = {f"{k}_init": v for k, v in self.evaluate().items()}
            if initial:
                record = {**initial, **{k.removesuffix("_init"): v for k, v in initial.items()}}
                acc.log(record, step=0)
                if acc.is_main_process:
                    self.metrics.write({"step": 0, **record})
                    out.print("before training: " + _format(initial))
        started = time.perf_counter()
        images = 0
        last_loss = float("nan")
        window = LossWindow(acc.device)
        window.restore(self.state.loss_sums, self.state.loss_steps, acc.process_index, acc.num_processes)
        skipped = torch.zeros((), dtype=torch.long, device=acc.device)  # this process's, since the last checkpoint
        fault: str | None = None  # the first corrupt row this process met (several processes: reported together)
        with StopRequest() as stop, _progress(acc.is_main_process and run.progress) as progress:
            task = progress.add_task("train", total=self.total_steps, completed=self.state.step, info="")
            while self.state.step < self.total_steps:
                epoch, offset = divmod(self.state.step, self.steps_per_epoch)
                self.loader.set_epoch(epoch)
                batches = acc.skip_first_batches(self.loader, offset) if offset else self.loader
                window_start, window_images = time.perf_counter(), 0
                for raw in batches:
                    output = self._step(raw, StepInfo(self.state.step, self.total_steps, self.steps_per_epoch))
                    window.add(output.loss)
                    skipped += raw["skipped"]
                    fault = fault or raw.get("fault")
                    self.state.step += 1
                    images += run.batch_size
                    window_images += run.batch_size
                    step = self.state.step
                    evaluate = bool(every_eval) and step % every_eval == 0 and step != self.total_steps
                    record = step % run.log_every == 0 or step == self.total_steps or evaluate
                    save = bool(run.checkpoint_every) and step % run.checkpoint_every == 0 and step != self.total_steps
                    # The only wait on the device: at the same steps on every process (one process also stops at once).
                    if record or save or (acc.num_processes == 1 and stop.signal is not None):
                        paused = time.perf_counter()  # evaluation and checkpoints below do not count as training
                        agreement.raise_first(acc, SslcoreError(fault) if fault else None)
                        sums, stopped = self._check(window, stop.signal is not None)
                        if record:
                            rate = window_images / max(paused - window_start, 1e-9)
                            window_start, window_images = paused, 0
                            last_loss = sum(sums) / (acc.num_processes * window.steps)
                            window.restore()
                            entry = {"step": step, "epoch": epoch, "loss": last_loss,
                                     "lr": self.optimizer.param_groups[0]["lr"], "images_per_second": rate,
                                     **{k: float(v) for k, v in output.logs.items()}}
                            if evaluate:
                                entry.update(self.evaluate())
                            warning = self.collapse.check()
                            if acc.is_main_process:
                                self.metrics.write(entry)
                                if warning:
                                    out.print(warning)
                            acc.log(entry, step=step)
                            progress.update(task, completed=step, info=f"epoch {epoch} loss {last_loss:.4f} "
                                                                       f"lr {entry['lr']:.3g} {rate:.0f} img/s")
                        if save or stopped:
                            self.state.loss_sums = sums if window.steps else []  # the open window
                            self.state.loss_steps = window.steps
                            self._count_skipped(skipped)
                            checkpoint.save_checkpoint(acc, self.run_dir, step, run.keep_checkpoints, self.method)
                        if stopped:
                            raise Interrupted(stop.signal or signal.SIGTERM, step)
                        window_start += time.perf_counter() - paused
                    progress.update(task, completed=step)
                    if step >= self.total_steps:
                        break
        wall = time.perf_counter() - started
        self.state.loss_sums, self.state.loss_steps = [], 0
        self._count_skipped(skipped)
        checkpoint.save_checkpoint(acc, self.run_dir, self.state.step, run.keep_checkpoints, self.method)
        final = self.evaluate()
        summary = self._finish(final, initial, last_loss, images, wall)
        acc.end_training()
        return summary

    def _step(self, raw: dict[str, Any], info: StepInfo) -> MethodOutput:
        """One optimizer step: the global generators seeded for (seed, step, process), the step's learning rate,
        then :func:`train_step`."""
        set_seed(step_seed(self.recipe.run.seed, info.step, self.accelerator.process_index))
        self.schedule.apply(self.optimizer, info.step)
        views = ready_views(raw["views"])
        batch = Batch(views=channels_last(views) if self.recipe.run.channels_last else views, index=raw["index"],
                      label=raw.get("label"))
        return train_step(self.method, self.optimizer, batch, info, model=self.model, accelerator=self.accelerator,
                          grad_clip=self.recipe.run.grad_clip, attack=self.attack)

    def _count_skipped(self, skipped: torch.Tensor) -> None:
        """Add the samples of corrupt rows every process skipped since the last call to the run's count (a
        collective: at the same steps on every process)."""
        self.state.corrupt_rows += int(self.accelerator.reduce(skipped, "sum"))
        skipped.zero_()

    def _check(self, window: LossWindow, stop: bool) -> tuple[list[float], bool]:
        """Each process's loss sum over the window and whether any process was asked to stop; raises if a loss of
        the window was not finite."""
        sums, bad, stopped = window.gather(self.accelerator, stop)
        if bad is not None:
            checkpoint.raise_once(self.accelerator, SslcoreError(
                f"the loss became non-finite ({sum(sums)}) at step {self.state.step - window.steps + bad}; "
                "training stopped",
                where=str(self.run_dir),
                hint=checkpoint.restart_hint(self.run_dir),
            ))
        return sums, stopped

    def _finish(self, final: dict[str, float], initial: dict[str, float], last_loss: float, images: int,
                wall: float) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "steps": self.state.step,
            "epochs": self.state.step / self.steps_per_epoch,
            "final_loss": last_loss,
            "images_per_second": images / wall if wall > 0 else None,
            "wall_seconds": wall,
            "processes": self.accelerator.num_processes,
            "global_batch": self.recipe.run.batch_size,
            "corrupt_rows_skipped": self.state.corrupt_rows,
            **final,
            **initial,
        }
        if self.accelerator.is_main_process:
            from sslcore.export import save_networks

            if final:
                self.metrics.write({"step": self.state.step, **final})
            write_summary(self.run_dir / "summary.json", summary)
            plot_curves(self.metrics.read(), self.run_dir / "curves.png")
            save_networks(self.method.exported_networks(), self.run_dir, self.recipe)
            self.method.write_outputs(self.run_dir)
            if final:
                out.print("after training: " + _format(final) + (f"  (before: {_format(initial)})" if initial else ""))
            out.print(f"run directory: {self.run_dir}")
        self.accelerator.wait_for_everyone()
        return summary


def _initial_evaluation(records: list[dict[str, Any]]) -> dict[str, float]:
    for record in records:
        found = {k: v for k, v in record.items() if k.endswith("_init")}
        if found:
            return found
    return {}


def _format(results: dict[str, float]) -> str:
    return ", ".join(f"{k.removesuffix('_init')} {v:.2f}%" if "top" in k else f"{k} {v:.4g}" for k, v in results.items())


class _LineProgress(Progress):
    """Without a terminal (a pipe, a log file): one plain line per log step instead of the bar."""

    def update(self, task_id: TaskID, **changes: Any) -> None:
        super().update(task_id, **changes)
        if "info" in changes:
            task = self.tasks[task_id]
            out.print(f"step {task.completed:.0f}/{task.total:.0f} {changes['info']}", markup=False)


def _progress(enabled: bool) -> Progress:
    """The rich bar on a terminal, a line per log step elsewhere; nothing when not ``enabled``."""
    if enabled and not out.is_terminal:
        return _LineProgress(disable=True, console=out)
    return Progress(
        TextColumn("step {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeRemainingColumn(),
        disable=not enabled,
        console=out,
        transient=False,
    )


def train_from_recipe(recipe: str, overrides: Sequence[str] = (), host: PluginHost | None = None) -> dict[str, Any]:
    """Resolve ``recipe`` with ``overrides`` and train it; returns the summary."""
    host = host or PluginHost()
    resolved = resolve(recipe, host, overrides)
    try:
        return Trainer(resolved, host).fit()
    except Interrupted as stopped:
        out.print(str(stopped))
        raise SystemExit(stopped.exit_code) from None
