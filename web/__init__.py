"""The HTTP edge: what every entry point in `main.py` uses between the request and a service.

http.py      endpoint wrapper (the one error seam), ApiError and the JSON error shape, body parsing
schemas.py   request bodies and queries (pydantic), camelCase on the wire
query.py     the status check's query (msgspec: no pydantic at its cold start) and the id rules
auth.py      Firebase ID tokens and Google OIDC tokens -> `Caller`
webhooks.py  the webhook receivers: verify, de-duplicate, then fetch the truth
deps.py      the process's collaborators, built lazily once
"""
