"""The ``sslcore`` command: run, launch, check, list, plugins, recipes, embed, eval, export."""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence

import attrs
from rich.text import Text

from sslcore.config import config_fields
from sslcore.console import exit_on_user_error, out
from sslcore.data.shortcut import add_data_option, recipe_and_overrides
from sslcore.errors import SslcoreError
from sslcore.plugins import PluginHost
from sslcore.registry import BUILTIN_KINDS


#: File-system faults that are the user's to fix: no permission, a read-only file system, a full disk or quota.
_WRITE_FAULTS = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def _file_error(error: OSError) -> SslcoreError:
    """A one-line error for a file-system fault no command turned into one itself."""
    full = error.errno in (errno.ENOSPC, errno.EDQUOT)
    return SslcoreError(
        (error.strerror or str(error)).lower(),
        where=str(error.filename) if error.filename else None,
        hint="free space on that disk" if full else "make that place writable or write elsewhere (run.output_dir)",
    )


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage mistakes as one-line :class:`SslcoreError`s (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise SslcoreError(f"{self.prog}: {message}", hint=f"see `{self.prog} --help`")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sslcore", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    launch = commands.add_parser("launch", add_help=False,
                                 help="train on several processes: accelerate launch's options, then RECIPE [...]")
    launch.add_argument("arguments", nargs=argparse.REMAINDER)  # parsed by accelerate (sslcore.launch)

    run = commands.add_parser("run", help="train from a recipe (path or shipped recipe name)")
    run.add_argument("recipe", nargs="?")
    run.add_argument("overrides", nargs="*", default=[], metavar="table.key=value")
    add_data_option(run)

    check = commands.add_parser("check", help="validate a recipe and print it fully resolved")
    check.add_argument("recipe", nargs="?")
    check.add_argument("overrides", nargs="*", default=[], metavar="table.key=value")
    add_data_option(check)

    listing = commands.add_parser("list", help="registered components by kind, with their providers")
    builtin = ", ".join(kind.name for kind in BUILTIN_KINDS)
    listing.add_argument("kind", nargs="?", help=f"one of: {builtin}, or a kind a plugin adds")
    listing.add_argument("--fields", action="store_true", help="also show each component's config fields")

    commands.add_parser("plugins", help="installed plugins with their versions and hooks")
    commands.add_parser("recipes", help="recipes shipped by sslcore and its plugins")

    embed = commands.add_parser("embed", help="write one embedding per image, by a run's backbone, to Parquet")
    embed.add_argument("run_dir")
    embed.add_argument("--out", required=True, help="the .parquet file to write")
    embed.add_argument("--data", action="append", default=[], metavar="PATH|data.key=value",
                       help="a .parquet file or a folder of images / Parquet files, or an override of [data]")
    embed.add_argument("--split", default="train", choices=["train", "test"])
    embed.add_argument("--batch-size", type=int, default=256)
    embed.add_argument("--limit", type=int, default=None, help="embed only the first N images")

    evaluate = commands.add_parser("eval", help="evaluate a run's backbone")
    evaluate.add_argument("protocol", choices=["knn", "linear"])
    evaluate.add_argument("run_dir")
    evaluate.add_argument("overrides", nargs="*", default=[], metavar="eval.key=value")

    export = commands.add_parser("export", help="write a run's backbone as self-describing safetensors")
    export.add_argument("run_dir")
    export.add_argument("output")
    export.add_argument("--format", choices=["sslcore", "timm"], default="sslcore",
                        help="timm: check that timm alone rebuilds it (no surgery) and print the timm call")
    return parser


def cmd_list(host: PluginHost, kind: str | None, fields: bool) -> None:
    kinds = [host.kinds[kind]] if kind is not None else list(host.kinds)
    builtin = {declared.name for declared in BUILTIN_KINDS}
    for declared in kinds:
        header = Text(f"{declared.name}:", style="bold")
        if declared.name not in builtin:  # a kind a plugin added: who added it, its recipe tables, what it is
            tables = ", ".join(f"[{t}]" if t == declared.table else f"[{t}.<name>]" for t in declared.tables)
            about = f"  {tables}  {declared.description}"
            header.append_text(Text.assemble("  ", (str(declared.provider), "cyan"), about))
        out.print(header)
        for entry in host.registries[declared.name]:
            out.print(Text.assemble(f"  {entry.name:<24}", (f"{entry.provider}", "cyan"), f"  {entry.description}"))
            if fields:
                for name, type_name, default in config_fields(entry.config):
                    shown = "(required)" if default is attrs.NOTHING else f"= {default!r}"
                    out.print(Text(f"      {name}: {type_name} {shown}"))


def cmd_plugins(host: PluginHost) -> None:
    for info in host.plugins():
        version = f" {info.version}" if info.version else ""
        source = f"{info.distribution}{version}" if info.distribution else "not from a distribution"
        out.print(Text.assemble((info.name, "bold"), f"  ({source})  ", ", ".join(info.hooks), (info.note, "yellow")))


def cmd_recipes(host: PluginHost) -> None:
    for entry in host.recipes:
        out.print(Text.assemble(f"{entry.name:<28}", (str(entry.provider), "cyan"), f"  {entry.path}"))


def parse_command_line(argv: list[str]) -> argparse.Namespace:
    """The parsed command line; ``run`` and ``check`` take overrides on both sides of ``--data DIR`` (argparse
    alone stops collecting positionals at the first option)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command in ("run", "check") and all("=" in arg and not arg.startswith("-") for arg in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.parse_args(argv)  # argparse's own "unrecognized arguments" message and exit code 2
    return args


def main(argv: Sequence[str] | None = None) -> None:
    try:
        argv = list(sys.argv[1:] if argv is None else argv)
        if argv[:1] == ["launch"]:  # its options are accelerate launch's, parsed by accelerate's own parser
            from sslcore.launch import launch

            return launch(argv[1:], PluginHost())
        args = parse_command_line(argv)
        host = PluginHost(allow_clashes=args.command == "plugins")
        if args.command == "run":
            from sslcore.engine.trainer import train_from_recipe

            train_from_recipe(*recipe_and_overrides(args.recipe, args.overrides, args.data), host=host)
        elif args.command == "check":
            from sslcore.recipe import resolve

            recipe, overrides = recipe_and_overrides(args.recipe, args.overrides, args.data)
            out.print(Text(resolve(recipe, host, overrides).to_toml()))
        elif args.command == "list":
            cmd_list(host, args.kind, args.fields)
        elif args.command == "plugins":
            cmd_plugins(host)
        elif args.command == "recipes":
            cmd_recipes(host)
        elif args.command == "embed":
            from sslcore.evaluation.embed import embed_run

            embed_run(args.run_dir, args.out, args.data, host, split=args.split, batch_size=args.batch_size,
                      limit=args.limit)
        elif args.command == "eval":
            from sslcore.evaluation.offline import evaluate_run

            evaluate_run(args.run_dir, args.protocol, args.overrides, host=host)
        elif args.command == "export":
            from sslcore.export import export_run, timm_call

            for path in export_run(args.run_dir, args.output, args.format):
                out.print(Text(timm_call(path) if args.format == "timm" else f"wrote {path}"))
    except SslcoreError as error:
        exit_on_user_error(error)
    except OSError as error:
        if error.errno not in _WRITE_FAULTS:
            raise
        exit_on_user_error(_file_error(error))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
