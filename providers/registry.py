"""The one place providers are registered: their specs, in priority order.

specs()                     every registered `ProviderSpec`, priority first (HeyGen, then RunwayML)
spec(name)                  one of them; `UnknownProvider` (a `KeyError`) names the known ones
names()                     their names, in priority order
build_providers(settings)   the clients of the providers whose keys are configured, in that order
registered(spec)            a context manager that adds a spec for its duration (tests)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from config import Settings
from providers.base import Provider
from providers.heygen import SPEC as HEYGEN
from providers.runwayml import SPEC as RUNWAYML
from providers.spec import ProviderSpec

_lock = threading.Lock()
_specs: dict[str, ProviderSpec] = {s.name: s for s in (HEYGEN, RUNWAYML)}


class UnknownProvider(KeyError):
    pass


def specs() -> tuple[ProviderSpec, ...]:
    with _lock:
        return tuple(sorted(_specs.values(), key=lambda s: (s.priority, s.name)))


def names() -> tuple[str, ...]:
    return tuple(s.name for s in specs())


def spec(name: str) -> ProviderSpec:
    with _lock:
        found = _specs.get(name)
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
        if extra.name in _specs:
            raise ValueError(f"provider {extra.name!r} is registered already")
        _specs[extra.name] = extra
    try:
        yield extra
    finally:
        with _lock:
            _specs.pop(extra.name, None)
