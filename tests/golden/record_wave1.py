"""Golden first-five training losses of every method plugin -- wave 1 recording, kept for reference only.

This script ran against sslcore commit f316207 (the code before the core / method-plugin refactor), from a detached
git worktree of that commit, with the modules imported from the worktree:

    cd /work/main && git worktree add /tmp/golden HEAD
    cp tests/golden/record_wave1.py /tmp/golden/record.py   # (it was written there first, as record.py)
    cd /tmp/golden && HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 \
        PYTHONPATH=/tmp/golden:$(ls -d /tmp/golden/plugins/*/src | tr '\n' ':') \
        /work/main/.venv/bin/python record.py [OUTPUT_JSON]

It targets the OLD API (sslcore.testing.build_recipe / tiny_host / batch_of / training_step, sslcore.method.StepInfo)
and is not expected to run after the refactor; tests/golden/first_losses.json, which it wrote, is self-describing
so the cases can be rebuilt with the new API. Its name does not start with ``test_``: pytest does not collect it.

Protocol of every case (also written into the JSON):
  * torch.set_num_threads(1); float32 on the CPU; a single process.
  * The batch: a generator ``torch.Generator().manual_seed(0)``; views drawn in order with
    ``torch.randn(8, 3, size, size, generator=g)`` (one per view, sizes as listed); index = arange(8);
    labels (supcon only) = arange(8) % 3.
  * ``torch.manual_seed(0)``, then the method is built from the plugin's ``*_smoke`` recipe with the overrides
    (the backbone is replaced by the ``tiny`` test backbone), num_samples=64, total_steps=10, steps_per_epoch=5.
  * optimizer = SGD(method.parameters(), lr=0.1, momentum=0.9) (no weight decay; the recipe's [optimizer] and
    [schedule] tables are not used).
  * For k = 0..4: ``torch.manual_seed(1000 + k)``, then one training step in the engine's order (forward, zero_grad,
    backward, before_optimizer_step, optimizer.step, after_optimizer_step) on the same batch with
    StepInfo(step=k, total_steps=10, steps_per_epoch=5); record float(output.loss).
"""

from __future__ import annotations

import importlib
import json
import math
import subprocess
import sys
from pathlib import Path

import torch

import sslcore
from sslcore.method import Batch, StepInfo
from sslcore.testing import build_recipe, tiny_host, training_step

COMMIT = "f316207"
BATCH = 8
NUM_SAMPLES = 64
TOTAL_STEPS = 10
STEPS_PER_EPOCH = 5
STEPS = 5
LR = 0.1
MOMENTUM = 0.9
TINY = 'backbone={kind = "tiny", width = 16}'

#: The resolved recipe tables the method is built from (every option, defaults included), copied into the JSON so the
#: cases can be rebuilt even if the smoke recipes change.
METHOD_TABLES = ("method", "backbone", "heads", "key_store", "target_updater", "loss")

TWO_VIEWS = [32, 32]
MULTICROP = [32, 32, 16, 16]  # 2 global crops, then 2 local crops (the smoke recipes' multicrop)

# case name -> (plugin name, recipe, overrides, view sizes, labels?)
CASES: dict[str, tuple[str, str, list[str], list[int], bool]] = {
    "moco": ("moco", "moco_smoke", [TINY], TWO_VIEWS, False),
    "moco_symmetric": ("moco", "moco_smoke", [TINY, "method.symmetric=true"], TWO_VIEWS, False),
    # extra: two BatchNorm groups of 4 at batch 8, so the key encoder's BN shuffle actually runs
    "moco_bn_groups_4": ("moco", "moco_smoke", [TINY, "method.bn_group_size=4"], TWO_VIEWS, False),
    "mocov3": ("mocov3", "mocov3_smoke", [TINY], TWO_VIEWS, False),
    "simclr": ("simclr", "simclr_smoke", [TINY], TWO_VIEWS, False),
    "simclr_v2": ("simclr", "simclr_smoke",
                  [TINY, "heads.projector.num_layers=3", "method.eval_from_projector_layer=1"], TWO_VIEWS, False),
    "byol": ("byol", "byol_smoke", [TINY], TWO_VIEWS, False),
    "simsiam": ("simsiam", "simsiam_smoke", [TINY], TWO_VIEWS, False),
    "supcon_in_batch": ("supcon", "supcon_smoke", [TINY, "heads.projector.hidden_dim=32"], TWO_VIEWS, True),
    "supcon_queue": ("supcon", "supcon_smoke",
                     [TINY, "heads.projector.hidden_dim=32", 'key_store={kind = "queue", size = 64, store_labels = true}'],
                     TWO_VIEWS, True),
    "invaspread": ("invaspread", "invaspread_smoke", [TINY], TWO_VIEWS, False),
    "instdisc": ("instdisc", "instdisc_smoke", [TINY], [32], False),
    "swav": ("swav", "swav_smoke", [TINY], MULTICROP, False),
    # extra: a queue of 16 per assigned crop filled from epoch 0: full after 2 steps, in the assignment at steps 2-4
    "swav_queue_from_start": ("swav", "swav_smoke", [TINY, "key_store.size=16", "method.epoch_queue_starts=0"],
                              MULTICROP, False),
    "dino": ("dino", "dino_smoke", [TINY], MULTICROP, False),
}


def make_batch(sizes: list[int], labels: bool) -> Batch:
    generator = torch.Generator().manual_seed(0)
    views = [torch.randn(BATCH, 3, size, size, generator=generator) for size in sizes]
    return Batch(views=views, index=torch.arange(BATCH), label=torch.arange(BATCH) % 3 if labels else None)


def run_case(plugin_name: str, recipe_name: str, overrides: list[str], sizes: list[int], labels: bool,
             lr: float = LR) -> tuple[list[float], str, dict]:
    module = importlib.import_module(f"sslcore_plugin_{plugin_name}.plugin")
    host = tiny_host(plugin_name, module)
    batch = make_batch(sizes, labels)
    torch.manual_seed(0)
    recipe, method = build_recipe(recipe_name, host, *overrides, num_samples=NUM_SAMPLES, total_steps=TOTAL_STEPS,
                             steps_per_epoch=STEPS_PER_EPOCH)
    method.train()
    optimizer = torch.optim.SGD(method.parameters(), lr=lr, momentum=MOMENTUM)
    losses = []
    for k in range(STEPS):
        torch.manual_seed(1000 + k)
        output = training_step(method, optimizer, batch, StepInfo(step=k, total_steps=TOTAL_STEPS,
                                                                   steps_per_epoch=STEPS_PER_EPOCH))
        losses.append(float(output.loss.detach()))
    resolved = {table: value for table, value in recipe.to_dict().items() if table in METHOD_TABLES}
    return losses, module.__file__, resolved


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/main/tests/golden/first_losses.json")
    torch.set_num_threads(1)
    here = Path(__file__).resolve().parent
    print("sslcore from", sslcore.__file__)
    assert Path(sslcore.__file__).resolve().is_relative_to(here), "sslcore was not imported from the worktree"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True).stdout.strip()
    print("worktree HEAD", head)
    assert head.startswith(COMMIT), head

    protocol = {
        "commit": head,
        "torch_version": torch.__version__,
        "device": "cpu",
        "dtype": "float32",
        "num_threads": 1,
        "processes": 1,
        "batch_size": BATCH,
        "batch": "g = torch.Generator().manual_seed(0); views = [torch.randn(8, 3, s, s, generator=g) for s in "
                 "view_sizes] (drawn in order); index = torch.arange(8); label = torch.arange(8) % 3 for cases "
                 "with labels, else None",
        "build": "torch.manual_seed(0); then build the method from the recipe with the overrides, num_samples=64, "
                 "total_steps=10, steps_per_epoch=5; backbone = the 'tiny' test backbone (sslcore.testing.TinyNet: "
                 "conv3x3 stride 2 -> BN -> ReLU -> global avg pool; width 16)",
        "optimizer": "torch.optim.SGD(method.parameters(), lr=lr, momentum=0.9), no weight decay; the recipe's "
                     "[optimizer]/[schedule] tables are not used",
        "steps": "for k in 0..4: torch.manual_seed(1000 + k); output = forward(batch, StepInfo(step=k, "
                 "total_steps=10, steps_per_epoch=5)); zero_grad; output.loss.backward(); "
                 "before_optimizer_step(info); optimizer.step(); after_optimizer_step(info); record float(output.loss)",
        "reproducibility": "rerunning this protocol at this commit reproduces the losses bit for bit with "
                           "torch.set_num_threads(1); with 2 threads they moved by up to 5e-6 (instdisc, absolute), "
                           "~1e-6 elsewhere: compare with rel_tol ~1e-5 or pin one thread",
    }
    results: dict = {"_protocol": protocol}
    for name, (plugin_name, recipe_name, overrides, sizes, labels) in CASES.items():
        lr = LR
        losses, module_file, resolved = run_case(plugin_name, recipe_name, overrides, sizes, labels, lr)
        assert Path(module_file).resolve().is_relative_to(here), f"{module_file} is not from the worktree"
        assert all(math.isfinite(x) for x in losses), (name, losses)
        note = None
        if len(set(losses)) == 1:
            lr = 1.0
            losses, _, _ = run_case(plugin_name, recipe_name, overrides, sizes, labels, lr)
            note = "losses constant at lr 0.1: recorded at lr 1.0"
            assert len(set(losses)) > 1, (name, losses)
        print(f"{name:24s} {module_file}\n    {losses}")
        results[name] = {
            "plugin": plugin_name,
            "recipe": recipe_name,
            "overrides": overrides,
            "losses": losses,
            "batch_size": BATCH,
            "num_views": len(sizes),
            "view_sizes": sizes,
            "labels": "torch.arange(8) % 3" if labels else None,
            "index": "torch.arange(8)",
            "num_samples": NUM_SAMPLES,
            "total_steps": TOTAL_STEPS,
            "steps_per_epoch": STEPS_PER_EPOCH,
            "optimizer": {"kind": "torch.optim.SGD", "lr": lr, "momentum": MOMENTUM, "weight_decay": 0.0},
            "seeds": {"batch_generator": 0, "before_build": 0, "before_step_k": "1000 + k"},
            **({"note": note} if note else {}),
            "resolved_method_tables": resolved,
        }
    stray = [m.__file__ for n, m in sys.modules.items() if n.split(".")[0].startswith("sslcore")
             and getattr(m, "__file__", None) and not Path(m.__file__).resolve().is_relative_to(here)]
    assert not stray, f"modules imported from outside the worktree: {stray}"
    loaded = sorted(n for n in sys.modules if n.split(".")[0].startswith("sslcore"))
    print(f"all {len(loaded)} sslcore* modules imported from {here}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("wrote", out)


if __name__ == "__main__":
    main()
