"""``run.trackers``: checked when the recipe resolves, the recipe logged flattened, TensorBoard's event files read back
and W&B (offline) continued by a resumed run."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from engine_support import recipe_text, run_sslcore

from sslcore.cli import main
from sslcore.engine import trackers
from sslcore.engine.checkpoint import list_checkpoints


def test_the_recipe_is_flattened_to_dotted_scalars() -> None:
    document = {
        "run": {"steps": 4, "trackers": ["wandb"], "grad_clip": None},
        "optimizer": {"base_lr": 0.1, "betas": [0.9, 0.999], "nesterov": False},
        "heads": {"projector": {"kind": "mlp", "out_dim": 16}},
    }
    assert trackers.flatten(document) == {
        "run.steps": 4,
        "run.trackers": '["wandb"]',
        "optimizer.base_lr": 0.1,
        "optimizer.betas": "[0.9, 0.999]",
        "optimizer.nesterov": False,
        "heads.projector.kind": "mlp",
        "heads.projector.out_dim": 16,
    }


def _check(capsys: pytest.CaptureFixture[str], *overrides: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exited:
        main(["check", "simclr_smoke", *overrides])
    return exited.value.code, capsys.readouterr().err


def test_a_misspelt_tracker_is_a_one_line_error_at_check(capsys) -> None:
    code, err = _check(capsys, 'run.trackers=["tensorbord"]')
    assert code == 2 and err.count("\n") == 1, err
    assert "[run.trackers]" in err and "did you mean 'tensorboard'?" in err and "Traceback" not in err


def test_a_tracker_whose_package_is_missing_is_a_one_line_error_naming_the_extra(capsys, monkeypatch) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else find_spec(name, *a))
    code, err = _check(capsys, 'run.trackers=["wandb"]')
    assert code == 2 and err.count("\n") == 1, err
    assert "[run.trackers]" in err and 'pip install "sslcore[wandb]"' in err


def _hparams(log_dir: Path) -> list[dict[str, float | str]]:
    """The hyperparameters of each ``add_hparams`` session under ``log_dir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

    sessions = []
    for events in sorted(log_dir.glob("*/events.*")):
        accumulator = EventAccumulator(str(events.parent))
        accumulator.Reload()
        for content in accumulator.PluginTagToContent("hparams").values():
            data = HParamsPluginData.FromString(content)
            if data.HasField("session_start_info"):
                sessions.append(
                    {
                        k: v.number_value if v.HasField("number_value") else v.string_value
                        for k, v in data.session_start_info.hparams.items()
                    }
                )
    return sessions


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None or importlib.util.find_spec("wandb") is None,
    reason='needs the tracker extras: pip install "sslcore[tensorboard,wandb]"',
)
def test_tensorboard_and_wandb_log_the_run_and_a_resume_continues_them(tmp_path, plugin_env) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=4, batch=8, checkpoint_every=2))
    args = [str(recipe), 'run.trackers=["tensorboard", "wandb"]', "data.train_limit=64"]
    env = dict(plugin_env, WANDB_MODE="offline", WANDB_SILENT="true")
    first = run_sslcore(args, env)
    assert first.returncode == 0, first.stderr
    run_dir = tmp_path / "out" / "r"
    logged = {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}
    # as if the run had died after logging step 4, before its last checkpoint and summary
    shutil.rmtree(list_checkpoints(run_dir)[-1][1])
    (run_dir / "summary.json").unlink()
    resumed = run_sslcore(args, env)
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 2" in resumed.stdout

    events = EventAccumulator(str(run_dir / "tensorboard" / "r"))
    events.Reload()
    losses = {event.step: event.value for event in events.Scalars("loss")}
    assert list(losses) == [1, 2, 3, 4]  # steps 3 and 4 of the first run purged, logged once by the resumed one
    assert losses == pytest.approx(logged)
    sessions = _hparams(run_dir / "tensorboard" / "r")
    assert len(sessions) == 2
    assert sessions[0]["optimizer.base_lr"] == pytest.approx(0.1) and sessions[0]["method.kind"] == "pairwise"
    assert sessions[0]["optimizer.betas"] == "[0.9, 0.999]"

    wandb_id = json.loads((run_dir / "trackers.json").read_text())["wandb"]
    offline_runs = sorted(path.name for path in (run_dir / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and all(name.endswith(f"-{wandb_id}") for name in offline_runs)


@pytest.mark.skipif(importlib.util.find_spec("trackio") is None, reason='needs the extra: pip install "sslcore[trackio]"')
def test_trackio_logs_the_run_and_a_resume_continues_the_same_run(tmp_path, plugin_env, monkeypatch) -> None:
    import trackio.sqlite_storage as storage

    recipe = tmp_path / "r.toml"
    recipe.write_text(recipe_text(tmp_path / "out", steps=4, batch=8, checkpoint_every=2))
    args = [str(recipe), 'run.trackers=["trackio"]', "data.train_limit=64"]
    env = dict(plugin_env, TRACKIO_DIR=str(tmp_path / "trackio"))
    first = run_sslcore(args, env)
    assert first.returncode == 0, first.stderr
    run_dir = tmp_path / "out" / "r"
    logged = {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}
    shutil.rmtree(list_checkpoints(run_dir)[-1][1])  # as if the run had died after logging step 4
    (run_dir / "summary.json").unlink()
    resumed = run_sslcore(args, env)
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 2" in resumed.stdout

    name = json.loads((run_dir / "trackers.json").read_text())["trackio"]
    monkeypatch.setattr(storage, "TRACKIO_DIR", tmp_path / "trackio")  # read back what the two runs wrote
    assert storage.SQLiteStorage.get_runs("r") == [name]  # the resumed run continued the first one
    losses = {}
    for record in storage.SQLiteStorage.get_logs("r", name):
        if "loss" in record:
            losses[record["step"]] = record["loss"]  # steps 3 and 4 logged again by the resumed run: the last wins
    assert losses == pytest.approx(logged)
    config = storage.SQLiteStorage.get_run_config("r", name)
    assert config["optimizer.base_lr"] == pytest.approx(0.1) and config["method.kind"] == "pairwise"
