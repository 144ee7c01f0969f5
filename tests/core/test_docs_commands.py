"""Every command shown in README.md and docs/*.md runs as shown, so the docs cannot drift from the code.

Commands are read from fenced code blocks: in a ``bash`` / ``sh`` / ``shell`` block every line that is not blank or a
comment (a line ending in ``\\`` continues on the next), in a ``console`` block every line that starts with ``$ ``
(the others are output). Blocks in other languages (``text``, ``toml``, ``python``) hold no commands, and every block
must name its language. A few words are placeholders (:data:`PLACEHOLDERS`). Each command is then:

- a training command (``python -m sslcore.run``, ``sslcore run``, ``sslcore launch``, ``accelerate launch -m
  sslcore.run``, ``torchrun -m sslcore.run``): ``sslcore check`` with its arguments must accept it (and Accelerate's
  parser the launcher's options); when its data is on this machine it then trains end to end with tiny limits
  (two steps, small batches, few images);
- any other ``sslcore`` command: run, and must succeed (against a tiny finished run for ``RUN_DIR``);
- in :data:`SKIPPED`, with the reason it cannot run offline in a test. A command of any other kind fails the test.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tomllib
from PIL import Image

from sslcore import cli
from sslcore.config import config_fields
from sslcore.plugins import PluginHost

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = {"bash", "sh", "shell"}
OTHER_LANGUAGES = {"console", "text", "toml", "python"}
_FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*(\S*)")

#: Commands that cannot run offline in a test, as written in the docs (comments dropped), and why.
SKIPPED = {
    "bash scripts/quickstart.sh": "creates .venv and installs every package (minutes); CI runs the same install through "
                                  "scripts/test.sh",
    "bash scripts/test.sh": "the whole test suite, of which this test is a part",
    "source .venv/bin/activate": "changes the reader's shell; nothing to check",
    "pip install 'sslcore[tensorboard]'": "installs from PyPI (no network here); the extra is declared in pyproject.toml",
    "pip install docs/examples/sslcore-fifo-keystore": "installs into the environment; tests/core/"
                                                       "test_external_plugin.py installs it into a throwaway folder",
    "tensorboard --logdir runs/simclr_smoke/tensorboard": "starts a server that runs until it is stopped",
    "sslcore check my_recipe.toml key_store.size=0": "a recipe the reader writes; the error it shows is tested in "
                                                     "tests/core/test_external_plugin.py",
    "sslcore list noise": "needs docs/examples/sslcore-example-kind installed; tests/core/test_example_kind.py installs "
                          "it into a throwaway folder and runs this",
    "python -m sslcore.run noisy_pair_digits run.steps=3": "needs docs/examples/sslcore-example-kind installed; "
                                                           "tests/core/test_example_kind.py checks its recipe",
}
#: Words of the docs that stand for something the reader has: what the test puts in their place.
PLACEHOLDERS = {"RECIPE": "quickstart", "[KIND]": None, "RUN_DIR": "{run_dir}", "my_images/": "{images}"}
_RUN_RECIPE = re.compile(r"^runs/[^/]+/recipe\.toml$")  # a run directory's resolved recipe: the tiny run's
#: Tiny limits for an end-to-end run, each set where the resolved recipe has the key.
TINY = {"run": {"steps": 2, "batch_size": 8, "log_every": 1, "eval_every": 0, "checkpoint_every": 0, "num_workers": 0,
                "progress": False},
        "data": {"train_limit": 256, "test_limit": 32},  # room for a documented kNN k of 200
        "eval": {"limit_train": 256, "limit_eval": 32}}
_DATA_PATHS = ("train", "test", "path")


@dataclass(frozen=True)
class Command:
    file: str
    line: int
    text: str  # as written, comments dropped, continuations joined

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)


def fenced_blocks(path: Path) -> Iterator[tuple[str, int, list[str]]]:
    """``(language, line number of the first line, lines)`` of each fenced block of a Markdown file."""
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        opening = _FENCE.match(lines[index])
        if not opening:
            index += 1
            continue
        fence = opening.group(2)
        end = next((i for i in range(index + 1, len(lines)) if lines[i].strip().startswith(fence)), len(lines))
        yield opening.group(3).lower(), index + 2, lines[index + 1:end]
        index = end + 1


def _logical_lines(lines: list[str], first: int) -> Iterator[tuple[int, str]]:
    """Lines joined where one ends in a backslash, with the number of their first line."""
    start, parts = first, []
    for number, line in enumerate(lines, first):
        if not parts:
            start = number
        parts.append(line.rstrip().removesuffix("\\"))
        if not line.rstrip().endswith("\\"):
            yield start, " ".join(parts)
            parts = []


def commands(path: Path) -> list[Command]:
    found = []
    for language, first, lines in fenced_blocks(path):
        assert language in SHELL_LANGUAGES | OTHER_LANGUAGES, f"{path.name}:{first - 1}: a block names no known language"
        for number, line in _logical_lines(lines, first):
            if language == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            elif language not in SHELL_LANGUAGES:
                continue
            words = shlex.split(line, comments=True)
            if words:
                found.append(Command(path.relative_to(ROOT).as_posix(), number, shlex.join(words)))
    return found


ALL = [command for path in DOCS for command in commands(path)]


def _marks(command: Command) -> list[pytest.MarkDecorator]:
    two = "--num_processes" in command.argv and command.argv[command.argv.index("--num_processes") + 1] != "1"
    return [pytest.mark.distributed] if two else []


def test_the_docs_show_commands_and_every_skipped_one_is_still_there():
    texts = {command.text for command in ALL}
    assert len(ALL) >= 20, [c.text for c in ALL]
    assert not set(SKIPPED) - texts, f"skipped commands no longer in the docs: {set(SKIPPED) - texts}"


# -- running them -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Iterator[Path]:
    """A working directory that looks like the repository's root (relative paths of the docs resolve from it), with
    ``../shared`` beside it; runs go to its ``runs/``. Removed after the module: its runs hold about 1.5 GB."""
    root = tmp_path_factory.mktemp("docs")
    work = root / "work"
    work.mkdir()
    for entry in ("recipes", "docs", "scripts", "plugins", "benchmarks"):
        (work / entry).symlink_to(ROOT / entry)
    if (ROOT.parent / "shared").is_dir():
        (root / "shared").symlink_to(ROOT.parent / "shared")
    images = work / "my_images"
    for index in range(40):  # any layout: some in a subfolder
        folder = images / ("a" if index % 2 else "") / ""
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 12, 3), 5 * index, dtype=np.uint8)).save(folder / f"{index}.png")
    yield work
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def run_dir(place: Path) -> Path:
    """A tiny finished quickstart run, for the commands that take RUN_DIR."""
    _sslcore(["run", "quickstart", *_tiny_overrides(["quickstart"], place), "run.name=docs_run"], place)
    return place / "runs" / "docs_run"


def _sslcore(argv: list[str], cwd: Path) -> None:
    """``sslcore ARGV`` in this process, in ``cwd``; fails the test on a non-zero exit."""
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        cli.main(argv)
    except SystemExit as exited:
        assert exited.code in (0, None), f"sslcore {shlex.join(argv)} exited with {exited.code}"
    finally:
        os.chdir(previous)


def _resolved(args: list[str], cwd: Path, capsys) -> dict:
    """What ``sslcore check ARGS`` prints, read as TOML (it fails the test if the recipe is refused)."""
    capsys.readouterr()
    _sslcore(["check", *args], cwd)
    return tomllib.loads(capsys.readouterr().out)


def _tiny_overrides(args: list[str], cwd: Path, resolved: dict | None = None) -> list[str]:
    """:data:`TINY`'s values for the keys the recipe's run, data source and evaluator take."""
    if resolved is None:
        result = subprocess.run([sys.executable, "-m", "sslcore.cli", "check", *args], cwd=cwd, capture_output=True,
                                text=True, check=True)
        resolved = tomllib.loads(result.stdout)
    host = PluginHost()
    kinds = {"run": None, "data": "dataset", "eval": "evaluator"}
    overrides = []
    for table, values in TINY.items():
        if table not in resolved:
            continue
        kind = kinds[table]
        taken = set(values) if kind is None else {
            name for name, _, _ in config_fields(host.registries[kind].get(resolved[table]["kind"]).config)}
        overrides += [f"{table}.{key}={str(value).lower() if isinstance(value, bool) else value}"
                      for key, value in values.items() if key in taken]
    return overrides


def _missing_data(resolved: dict, cwd: Path) -> str | None:
    """Why the recipe's data is not on this machine (a hub dataset, a path that does not exist), or None."""
    data = resolved.get("data", {})
    if data.get("kind") == "hub":
        return f"the hub dataset '{data.get('path')}' needs the network"
    missing = [data[key] for key in _DATA_PATHS if key in data and not (cwd / data[key]).exists()]
    return f"needs data not on this machine: {', '.join(missing)}" if missing else None


def _substitute(argv: list[str], run: Path, place: Path) -> list[str]:
    out = []
    for word in argv:
        if _RUN_RECIPE.match(word):
            word = str(run / "recipe.toml")
        elif word in PLACEHOLDERS:
            if PLACEHOLDERS[word] is None:
                continue
            word = PLACEHOLDERS[word].format(run_dir=run, images=place / "my_images")
        out.append(word)
    return out


def _training_arguments(argv: list[str]) -> tuple[str, list[str], list[str]] | None:
    """``(launcher, launcher options, sslcore.run arguments)`` of a training command, or None."""
    if argv[:3] == ["python", "-m", "sslcore.run"]:
        return "python", [], argv[3:]
    if argv[:2] == ["sslcore", "run"]:
        return "python", [], argv[2:]
    if argv[:2] == ["accelerate", "launch"] and "-m" in argv and argv[argv.index("-m") + 1] == "sslcore.run":
        at = argv.index("-m")
        return "accelerate", argv[2:at], argv[at + 2:]
    if argv[:1] == ["torchrun"] and "-m" in argv and argv[argv.index("-m") + 1] == "sslcore.run":
        at = argv.index("-m")
        return "torchrun", argv[1:at], argv[at + 2:]
    if argv[:2] == ["sslcore", "launch"]:
        from accelerate.commands.launch import launch_command_parser

        parsed = launch_command_parser().parse_args(argv[2:])
        options = argv[2:len(argv) - 1 - len(parsed.training_script_args)]
        return "sslcore launch", options, [parsed.training_script, *parsed.training_script_args]
    return None


@pytest.mark.parametrize("command", [pytest.param(c, marks=_marks(c), id=f"{c.file}:{c.line}") for c in ALL])
def test_a_documented_command_runs(command: Command, place: Path, request, capsys):
    if command.text in SKIPPED:
        pytest.skip(SKIPPED[command.text])  # the test above checks that the command is still in the docs
    argv = _substitute(command.argv, request.getfixturevalue("run_dir") if "RUN_DIR" in command.argv or any(
        _RUN_RECIPE.match(word) for word in command.argv) else place / "runs", place)
    training = _training_arguments(argv)
    if training is None:
        assert argv[0] == "sslcore", f"{command.file}:{command.line}: no rule for `{command.text}` (add one to this " \
                                     "test, or add it to SKIPPED with the reason it cannot run offline)"
        capsys.readouterr()
        _sslcore(argv[1:], place)
        return
    launcher, options, args = training
    if launcher in ("accelerate", "sslcore launch"):
        from accelerate.commands.launch import launch_command_parser

        launch_command_parser().parse_args([*options, "x.py"])  # the launcher's options exist
    resolved = _resolved(args, place, capsys)
    if _missing_data(resolved, place) is not None or launcher in ("accelerate", "torchrun"):
        return  # checked only: its data is not here, or it needs the GPUs its launcher is for
    name = f"run.name=docs_{Path(command.file).stem}_{command.line}"
    tiny = [*_tiny_overrides(args, place, resolved), name]
    if launcher == "python":
        _sslcore(["run", *args, *tiny], place)
        assert (place / "runs" / name.partition("=")[2] / "summary.json").is_file()
        return
    done = subprocess.run([sys.executable, "-m", "sslcore.cli", "launch", *options, "--main_process_port", "0",
                           *args, *tiny], cwd=place, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, OMP_NUM_THREADS="1"), check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"processes": 2' in (place / "runs" / name.partition("=")[2] / "summary.json").read_text()


# -- recipe excerpts ----------------------------------------------------------------------------------------------
_EXCERPT = re.compile(r"<!-- excerpt-of: (\S+) -->\n```toml\n(.*?)```", re.DOTALL)


def _leaves(table: dict, prefix: str = "") -> Iterator[tuple[str, object]]:
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("path", DOCS, ids=lambda path: path.name)
def test_a_recipe_excerpt_shows_the_shipped_recipes_values(path: Path, capsys):
    """A TOML block marked ``<!-- excerpt-of: NAME -->`` shows values of the shipped recipe NAME, each as resolved."""
    for name, text in _EXCERPT.findall(path.read_text()):
        resolved = dict(_leaves(_resolved([name], ROOT, capsys)))
        shown = dict(_leaves(tomllib.loads(text)))
        assert {key: resolved.get(key) for key in shown} == shown, f"{path.name}: the excerpt of {name}"
