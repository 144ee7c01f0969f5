"""The pure-combination method plugins are a registration, a config class and recipes (the generic look-up method
does the rest): each package holds at most 50 lines of code, and docs/architecture.md reports every plugin's size."""

from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

ROOT = Path(__file__).parents[2]
PURE = ("byol", "invaspread", "moco", "mocov3", "simclr", "simsiam", "supcon")
MARKERS = ("<!-- plugin-sizes -->", "<!-- /plugin-sizes -->")


def code_lines(source: str) -> int:
    """Lines holding code: neither blank, nor only a comment, nor part of a docstring."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                docstrings.update(range(first.lineno, first.end_lineno + 1))
    code: set[int] = set()
    skipped = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER)
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in skipped:
            code.update(range(token.start[0], token.end[0] + 1))
    return len(code - docstrings)


def plugin_sizes() -> dict[str, int]:
    return {
        plugin.name.removeprefix("sslcore-plugin-"): sum(code_lines(p.read_text()) for p in plugin.glob("src/*/*.py"))
        for plugin in sorted((ROOT / "plugins").iterdir())
    }


def size_table(sizes: dict[str, int]) -> str:
    rows = [f"| `sslcore-plugin-{name}` | {lines} | {'generic look-up' if name in PURE else 'own step'} |"
            for name, lines in sizes.items()]
    return "\n".join(["| plugin | lines of code | method |", "| --- | --- | --- |", *rows])


def test_code_lines_skip_docstrings_comments_and_blank_lines() -> None:
    source = '"""Module.\n\nMore."""\n\n# a comment\nx = 1  # trailing\n\n\ndef f():\n    """Doc."""\n    return (\n        x\n    )\n'
    assert code_lines(source) == 5  # x = 1; def f(); return (; x; )


def test_pure_combination_plugins_hold_at_most_50_lines() -> None:
    sizes = plugin_sizes()
    assert set(PURE) <= set(sizes)
    assert {name: sizes[name] for name in PURE if sizes[name] > 50} == {}


def test_architecture_doc_reports_every_plugin_size() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    start, end = (doc.index(marker) for marker in MARKERS)
    assert doc[start + len(MARKERS[0]) : end].strip() == size_table(plugin_sizes()), "run python tests/core/test_plugin_sizes.py"


if __name__ == "__main__":  # `python tests/core/test_plugin_sizes.py` rewrites the table in docs/architecture.md
    path = ROOT / "docs" / "architecture.md"
    text = path.read_text()
    start, end = text.index(MARKERS[0]) + len(MARKERS[0]), text.index(MARKERS[1])
    path.write_text(text[:start] + "\n" + size_table(plugin_sizes()) + "\n" + text[end:])
