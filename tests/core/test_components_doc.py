"""docs/components.md lists every built-in component with its config fields, as `sslcore list --fields` does."""

from __future__ import annotations

from pathlib import Path

from sslcore.cli import cmd_list
from sslcore.plugins import PluginHost

DOC = Path(__file__).resolve().parents[2] / "docs" / "components.md"


def test_components_doc_matches_sslcore_list_fields(capsys):
    cmd_list(PluginHost(autoload=False), None, fields=True)
    listing = capsys.readouterr().out.strip()
    text = DOC.read_text()
    block = text.split("```text\n", 1)[1].split("```", 1)[0].strip()
    assert block == listing, "regenerate docs/components.md from `SSLCORE_DISABLE_PLUGIN_AUTOLOAD=1 sslcore list --fields`"
    for kind in ("key_store:", "target_updater:", "loss:", "head:"):
        assert kind in listing
