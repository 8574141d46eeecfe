"""Everything that speaks a provider's wire format, behind one protocol (`providers.base`).

    base.py        Provider protocol, VideoRequest, Capabilities, ProviderSnapshot, Status, error tree
    spec.py        ProviderSpec: what the rest of the project knows about one provider
    registry.py    the registered specs, in priority order; build_providers(settings)
    http.py        HttpProvider (session, timeouts, retries), transport-error translation
    signatures.py  shared webhook checks, Standard Webhooks, signing helpers for tests
    runwayml/      RunwayML API 2024-11-06: request, answers, client, webhook, SPEC
    heygen/        HeyGen API v3: mapping, client, webhook, SPEC
    prompts/       CV script -> prompts (pure)
    selection.py / quota.py / circuit.py   ranking, request budgets, circuit breaker (pure)

A provider is one package exporting its `SPEC`, plus one line in `registry.py`.
"""
