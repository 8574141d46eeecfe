"""Everything that speaks a provider's wire format, behind one protocol (`providers.base`).

    base.py       Provider protocol, VideoRequest, ProviderSnapshot, Status, the error tree
    http.py       sessions, transport-error translation, retries
    runwayml.py   RunwayML API 2024-11-06           heygen.py   HeyGen API v3
    prompts.py    CV script -> prompts (pure)       selection.py / quota.py   ranking, budgets (pure)

`build_providers(settings)` returns the providers whose keys are configured, in priority order.
"""

from __future__ import annotations

from config import Settings
from providers.base import Provider

PRIORITY = ("heygen", "runwayml")


def build_providers(settings: Settings) -> dict[str, Provider]:
    """The configured providers, keyed by name, in priority order (HeyGen first)."""
    from providers.heygen import HeyGenProvider
    from providers.runwayml import RunwayMLProvider

    built: dict[str, Provider] = {}
    if settings.heygen_api_key is not None:
        built["heygen"] = HeyGenProvider(settings)
    if settings.runwayml_api_key is not None:
        built["runwayml"] = RunwayMLProvider(settings)
    return built
