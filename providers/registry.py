"""The one place providers are registered: their specs, in priority order.

specs()                     every registered `ProviderSpec`, priority first (HeyGen, then RunwayML)
spec(name)                  one of them; `UnknownProvider` (a `KeyError`) names the known ones
names()                     their names, in priority order
build_providers(settings)   the clients of the providers whose keys are configured, in that order
registered(spec)            a context manager that adds a spec for its duration (tests)

A provider package (its client, wire format and webhook reader) is imported when the registry is
first asked, not when it is imported: a request that never needs a provider (a status check of a
finished job) loads none.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from config import Settings
    from providers.base import Provider
    from providers.spec import ProviderSpec

PACKAGES = ("providers.heygen", "providers.runwayml")  # each exports its `SPEC`
_lock = threading.RLock()
_specs: dict[str, ProviderSpec] = {}
_loaded = False


class UnknownProvider(KeyError):
    pass


def _registry() -> dict[str, ProviderSpec]:
    """The registered specs, the built-in packages' imported at the first call. Hold `_lock`."""
    global _loaded
    if not _loaded:
        for package in PACKAGES:
            found: ProviderSpec = importlib.import_module(package).SPEC
            _specs.setdefault(found.name, found)
        _loaded = True
    return _specs


def specs() -> tuple[ProviderSpec, ...]:
    with _lock:
        return tuple(sorted(_registry().values(), key=lambda s: (s.priority, s.name)))


def names() -> tuple[str, ...]:
    return tuple(s.name for s in specs())


def spec(name: str) -> ProviderSpec:
    with _lock:
        found = _registry().get(name)
    if found is None:
        raise UnknownProvider(f"unknown provider {name!r}; known: {', '.join(names())}")
    return found


def build_providers(settings: Settings) -> dict[str, Provider]:
    """The configured providers, keyed by name, in priority order (HeyGen first)."""
    return {s.name: s.build(settings) for s in specs() if s.enabled(settings)}


@contextlib.contextmanager
def registered(extra: ProviderSpec) -> Iterator[ProviderSpec]:
    """Register `extra` while the block runs (a test's made-up provider); the registry is restored."""
    with _lock:
        if extra.name in _registry():
            raise ValueError(f"provider {extra.name!r} is registered already")
        _specs[extra.name] = extra
    try:
        yield extra
    finally:
        with _lock:
            _specs.pop(extra.name, None)
