"""The plugin manager: built-in components and installed plugins, loaded through the same hooks.

Environment:
- ``SSLCORE_DISABLE_PLUGIN_AUTOLOAD=1`` skips plugins installed through the ``sslcore`` entry-point group.
- ``SSLCORE_BLOCK_PLUGINS=a,b`` blocks plugins by entry-point (or built-in) name; ``DIST:NAME`` blocks only the entry
  point ``NAME`` of distribution ``DIST`` (to keep one of two distributions that use the same plugin name).

Errors in a plugin keep the plugin's own exception as their cause: ``SSLCORE_DEBUG=1`` shows its traceback.
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

#: Modules of the built-in components, registered like any plugin (name -> module path). Each holds config classes
#: and registers its factories as "module:function" strings, so that building a host imports no torch.
BUILTIN_PLUGINS: dict[str, str] = {
    "sslcore.backbones": "sslcore.components.backbone_configs",
    "sslcore.heads": "sslcore.components.head_configs",
    "sslcore.key_stores": "sslcore.components.key_store_configs",
    "sslcore.target_updaters": "sslcore.components.target_updater_configs",
    "sslcore.losses": "sslcore.components.loss_configs",
    "sslcore.datasets": "sslcore.data.source_configs",
    "sslcore.transforms": "sslcore.data.view_configs",
    "sslcore.evaluators": "sslcore.evaluation.registration",
    "sslcore.attacks": "sslcore.components.attack_configs",
    "sslcore.sample_buffers": "sslcore.components.sample_buffer_configs",
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
    note: str = ""


class PluginHost:
    """A plugin manager plus the kinds and registries its plugins filled. Create one per run (no globals)."""

    def __init__(
        self,
        *,
        autoload: bool | None = None,
        extra_plugins: Iterable[tuple[str, ModuleType | object]] = (),
        allow_clashes: bool = False,
    ) -> None:
        """``allow_clashes``: load neither of two distributions using one plugin name instead of raising (for
        ``sslcore plugins``, which lists them)."""
        self.pm = _StrictPluginManager(GROUP)
        self.pm.add_hookspecs(hookspecs)
        self._dists: dict[str, importlib.metadata.Distribution] = {}
        self._block = {name.strip() for name in os.environ.get(BLOCK_ENV, "").split(",") if name.strip()}
        self.blocked: list[PluginInfo] = []  # installed plugins blocked, known from their entry points only
        self.clashes: dict[str, list[importlib.metadata.Distribution | None]] = {}
        for name in self._block:
            self.pm.set_blocked(name)
        for name, module_path in BUILTIN_PLUGINS.items():
            if not self.pm.is_blocked(name):  # a blocked built-in is not even imported
                self._register(importlib.import_module(module_path), name)
        if autoload is None:
            autoload = os.environ.get(AUTOLOAD_ENV, "") in ("", "0")
        if autoload:
            self._load_entry_points(allow_clashes)
        for name, plugin in extra_plugins:
            self._register(plugin, name)
        self.kinds = self._add_kinds()
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as error:
            raise self._invalid(error) from error
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
            raise self._invalid(error, name) from error

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

    def _load_entry_points(self, allow_clashes: bool) -> None:
        by_name: dict[str, list[importlib.metadata.EntryPoint]] = {}
        for entry_point in importlib.metadata.entry_points(group=GROUP):
            dist = _name(entry_point.dist)
            if entry_point.name in self._block or f"{dist}:{entry_point.name}" in self._block:
                self.blocked.append(PluginInfo(entry_point.name, dist, _version(entry_point.dist), [], "blocked"))
            else:
                by_name.setdefault(entry_point.name, []).append(entry_point)
        for name, entry_points in sorted(by_name.items()):
            if len(entry_points) > 1:
                self.clashes[name] = [entry_point.dist for entry_point in entry_points]
                if allow_clashes:
                    continue
                keep = " or ".join(f"{BLOCK_ENV}={_name(ep.dist)}:{name}" for ep in entry_points)
                raise SslcoreError(
                    f"distributions {' and '.join(_label(ep.dist) for ep in entry_points)} both use the plugin name "
                    f"'{name}'",
                    hint=f"uninstall one, or keep one by blocking the other: {keep}",
                )
            self._load(entry_points[0])

    def _load(self, entry_point: importlib.metadata.EntryPoint) -> None:
        dist = entry_point.dist
        if self.pm.has_plugin(entry_point.name):
            raise SslcoreError(
                f"plugin {self._describe(entry_point.name)} and distribution {_label(dist)} "
                f"both use the plugin name '{entry_point.name}'",
                hint=f"uninstall the distribution, or skip it with {BLOCK_ENV}={_name(dist)}:{entry_point.name}",
            )
        if dist is not None:
            self._dists[entry_point.name] = dist
        try:
            plugin = entry_point.load()
        except Exception as error:  # any import failure of third-party code is the plugin's fault
            raise SslcoreError(
                f"plugin {self._describe(entry_point.name)} failed to import: {type(error).__name__}: {error}",
                hint=f"fix or uninstall it, or skip it with {BLOCK_ENV}={entry_point.name}",
            ) from error
        self._register(plugin, entry_point.name)

    def blocked_hint(self) -> str | None:
        """For an unknown component: the blocked installed plugins that may provide it (not imported, so which
        components they provide is unknown), or None."""
        if not self.blocked:
            return None
        names = ", ".join(f"'{info.name}'" + (f" (distribution {info.distribution} {info.version})" if info.distribution
                                               else "") for info in self.blocked)
        plugins = "plugin" if len(self.blocked) == 1 else "plugins"
        return f"{plugins} {names}, which {BLOCK_ENV} blocks, may provide it: unblock to use it"

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
                raise self._invalid(error) from error
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
                ) from error

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
        for name, dists in self.clashes.items():
            note = f"not loaded: {len(dists)} distributions use the name '{name}'; keep one with {BLOCK_ENV}=DIST:{name}"
            infos.extend(PluginInfo(name, _name(dist), _version(dist), [], note) for dist in dists)
        return sorted([*infos, *self.blocked], key=lambda info: info.name)


def _name(dist: importlib.metadata.Distribution | None) -> str | None:
    return dist.metadata["Name"] if dist is not None else None


def _version(dist: importlib.metadata.Distribution | None) -> str | None:
    return dist.version if dist is not None else None


def _label(dist: importlib.metadata.Distribution | None) -> str:
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "unknown"


def _own_version() -> str | None:
    try:
        return importlib.metadata.version("sslcore")
    except importlib.metadata.PackageNotFoundError:
        return None
