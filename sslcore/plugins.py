"""The plugin manager: built-in components and installed plugins, loaded through the same hooks.

Environment:
- ``SSLCORE_DISABLE_PLUGIN_AUTOLOAD=1`` skips plugins installed through the ``sslcore`` entry-point group.
- ``SSLCORE_BLOCK_PLUGINS=a,b`` blocks plugins by entry-point (or built-in) name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
from collections.abc import Iterable
from types import ModuleType, SimpleNamespace
from typing import Any

import attrs
import pluggy

from sslcore import hookspecs
from sslcore.errors import SslcoreError, did_you_mean
from sslcore.recipes_registry import RecipeRegistry
from sslcore.registry import BUILTIN_KINDS, Kinds, Provider, Registries

GROUP = "sslcore"
AUTOLOAD_ENV = "SSLCORE_DISABLE_PLUGIN_AUTOLOAD"
BLOCK_ENV = "SSLCORE_BLOCK_PLUGINS"

#: Modules of the built-in components, registered like any plugin (name -> module path).
BUILTIN_PLUGINS: dict[str, str] = {
    "sslcore.backbones": "sslcore.components.backbones",
    "sslcore.heads": "sslcore.components.heads",
    "sslcore.key_stores": "sslcore.components.key_stores",
    "sslcore.target_updaters": "sslcore.components.target_updaters",
    "sslcore.losses": "sslcore.components.losses",
    "sslcore.datasets": "sslcore.data.sources",
    "sslcore.transforms": "sslcore.data.views",
    "sslcore.evaluators": "sslcore.evaluation.registration",
    "sslcore.recipes": "sslcore.builtin_recipes",
}

class _StrictPluginManager(pluggy.PluginManager):
    """Rejects functions named like hooks that lack ``@hookimpl`` (they would otherwise be ignored)."""

    def parse_hookimpl_opts(self, plugin: Any, name: str) -> Any:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name.startswith("sslcore_") and inspect.isfunction(getattr(plugin, name, None)):
            raise pluggy.PluginValidationError(plugin, f"function {name} is not marked with @sslcore.hookimpl")
        return opts


@attrs.define
class PluginInfo:
    """One registered plugin, for `sslcore plugins`."""

    name: str
    distribution: str | None
    version: str | None
    hooks: list[str]


class PluginHost:
    """A plugin manager plus the kinds and registries its plugins filled. Create one per run (no globals)."""

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        extra_plugins: Iterable[tuple[str, ModuleType | object]] = (),
    ) -> None:
        self.pm = _StrictPluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self._dists: dict[str, importlib.metadata.Distribution] = {}
        blocked = [name.strip() for name in os.environ.get(BLOCK_ENV, "").split(",") if name.strip()]
        for name in blocked:
            self.pm.set_blocked(name)
        for name, module_path in BUILTIN_PLUGINS.items():
            if not self.pm.is_blocked(name):  # a blocked built-in is not even imported
                self._register(importlib.import_module(module_path), name)
        if autoload is None:
            autoload = os.environ.get(AUTOLOAD_ENV, "") in ("", "0")
        if autoload:
            self._load_entry_points()
        for name, plugin in extra_plugins:
            self._register(plugin, name)
        self.kinds = self._add_kinds()
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as error:
            raise self._invalid(error) from None
        self.registries = Registries(self.kinds)
        self.recipes = RecipeRegistry()
        for kind in self.kinds:
            self._call(kind.hook, self.registries[kind.name])
        self._call("sslcore_register_recipes", self.recipes)

    def _register(self, plugin: object, name: str) -> None:
        if self.pm.is_blocked(name):
            return
        if self.pm.has_plugin(name):
            raise SslcoreError(f"plugin name '{name}' is already taken by {self._describe(name)}", hint="rename one")
        previous = self.pm.get_name(plugin)
        if previous is not None:
            raise SslcoreError(
                f"plugin '{name}' is already registered as {self._describe(previous)}", hint="register it once"
            )
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as error:  # pluggy validates before registering: pass the name
            raise self._invalid(error, name) from None

    def _invalid(self, error: pluggy.PluginValidationError, name: str | None = None) -> SslcoreError:
        name = name or self.pm.get_name(error.plugin) or getattr(error.plugin, "__name__", repr(error.plugin))
        message = str(error)
        if "unknown hook" in message:
            hook = message.split("'")[1] if "'" in message else message
            return SslcoreError(
                f"plugin {self._describe(name)} implements unknown hook '{hook}'",
                hint=did_you_mean(hook, self.hook_names()),
            )
        message = "; ".join(line.strip() for line in message.splitlines() if line.strip())  # one line
        return SslcoreError(f"plugin {self._describe(name)} is invalid: {message}", hint="fix the plugin")

    def _describe(self, name: str) -> str:
        dist = self._dists.get(name)
        return f"'{name}' (distribution {_label(dist)})" if dist else f"'{name}'"

    def _load_entry_points(self) -> None:
        for entry_point in sorted(importlib.metadata.entry_points(group=GROUP), key=lambda ep: ep.name):
            if self.pm.is_blocked(entry_point.name):
                continue
            dist = entry_point.dist
            if self.pm.has_plugin(entry_point.name):
                raise SslcoreError(
                    f"plugin {self._describe(entry_point.name)} and distribution {_label(dist)} "
                    f"both use the plugin name '{entry_point.name}'",
                    hint=f"uninstall one of them, or skip both with {BLOCK_ENV}={entry_point.name}",
                )
            if dist is not None:
                self._dists[entry_point.name] = dist
            try:
                plugin = entry_point.load()
            except Exception as error:  # any import failure of third-party code is the plugin's fault
                raise SslcoreError(
                    f"plugin {self._describe(entry_point.name)} failed to import: {type(error).__name__}: {error}",
                    hint=f"fix or uninstall it, or skip it with {BLOCK_ENV}={entry_point.name}",
                ) from None
            self._register(plugin, entry_point.name)

    def provider(self, plugin_name: str) -> Provider:
        dist = self._dists.get(plugin_name)
        if dist is not None:
            return Provider(dist.metadata["Name"], dist.version)
        if plugin_name.startswith("sslcore."):
            return Provider("sslcore", _own_version())
        return Provider(plugin_name)

    def _add_kinds(self) -> Kinds:
        """The built-in kinds plus those plugins add; each added kind's registration hook becomes a hook spec."""
        own = Provider("sslcore", _own_version())
        kinds = Kinds(attrs.evolve(kind, provider=own) for kind in BUILTIN_KINDS)
        self._call("sslcore_add_kinds", kinds)
        for kind in list(kinds)[len(BUILTIN_KINDS) :]:  # the kinds plugins added
            caller = getattr(self.pm.hook, kind.hook, None)
            if caller is not None and caller.has_spec():
                raise SslcoreError(
                    f"component kind '{kind.name}' from {kind.provider} declares hook {kind.hook}, which exists",
                    hint="name the registration hook after the kind",
                )
            try:  # validates the implementations already registered against the new spec
                self.pm.add_hookspecs(SimpleNamespace(**{kind.hook: kind.spec}))
            except pluggy.PluginValidationError as error:
                raise self._invalid(error) from None
        return kinds

    def _call(self, hook_name: str, target: Any) -> None:
        """Call each implementation of ``hook_name`` with ``target``, whose ``provider`` names the plugin."""
        hook = getattr(self.pm.hook, hook_name)
        # Registration order (built-ins, installed plugins, extra plugins), so a later plugin can
        # replace=True an earlier entry; tryfirst / trylast move an implementation to either end.
        # (pluggy lists implementations in registration order and calls them in reverse.)
        for impl in sorted(hook.get_hookimpls(), key=lambda impl: (not impl.tryfirst, impl.trylast)):
            target.provider = self.provider(impl.plugin_name)
            try:
                impl.function(**{arg: target for arg in impl.argnames})
            except SslcoreError:
                raise
            except Exception as error:
                raise SslcoreError(
                    f"plugin {self._describe(impl.plugin_name)} failed in {hook_name}: "
                    f"{type(error).__name__}: {error}",
                    hint=f"fix or uninstall it, or skip it with {BLOCK_ENV}={impl.plugin_name}",
                ) from None

    def hook_names(self) -> list[str]:
        """Every hook with a spec: the core's and those of kinds plugins added."""
        return sorted(name for name, caller in vars(self.pm.hook).items() if name[0] != "_" and caller.has_spec())

    def plugins(self) -> list[PluginInfo]:
        infos = []
        for name, plugin in sorted(self.pm.list_name_plugin(), key=lambda item: item[0]):
            if plugin is None:  # blocked
                continue
            provider = self.provider(name)
            hooks = sorted(caller.name for caller in self.pm.get_hookcallers(plugin) or [])
            dist = self._dists.get(name)
            distribution = dist.metadata["Name"] if dist else "sslcore" if name.startswith("sslcore.") else None
            infos.append(PluginInfo(name, distribution, provider.version, hooks))
        return infos


def _label(dist: importlib.metadata.Distribution | None) -> str:
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "unknown"


def _own_version() -> str | None:
    try:
        return importlib.metadata.version("sslcore")
    except importlib.metadata.PackageNotFoundError:
        return None
