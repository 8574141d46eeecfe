"""The status check's query, validated with msgspec, and the id and provider rules every input shares.

`runwayml_status_check` is the call a waiting app makes most, so it loads no pydantic: its query is
a msgspec `Struct` (`web/http.py` `parse` takes either kind of model), as the settings are
(`config.py` says why). The request bodies of the other functions are pydantic models
(`web/schemas.py`); they take `ID_PATTERN`, `reserved_id` and `unregistered` from here, so each rule
is written once.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

import errors
from providers import registry
from providers.base import is_reserved_id

ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
DEFAULT_PROVIDER = "runwayml"  # a taskId with no provider is RunwayML's


def reserved_id(value: str) -> str | None:
    """What is wrong with a well-formed id, or None: Firestore reserves `__...__` ids."""
    return "ids of the form __...__ are reserved" if is_reserved_id(value) else None


def unregistered(name: str) -> str | None:
    """What is wrong with a provider's name, or None (the registry loads its packages at first use)."""
    names = registry.names()
    return None if name in names else f"must be one of {', '.join(names)}"


Identifier = Annotated[str, msgspec.Meta(pattern=ID_PATTERN)]


class StatusQuery(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel"):
    """`?jobId=` or `?taskId=` (with `provider`, RunwayML's by default): exactly one of the two ids."""

    job_id: Identifier | None = None
    task_id: Identifier | None = None
    provider: str | msgspec.UnsetType = msgspec.UNSET  # checked only when given (no registry load)

    def __post_init__(self) -> None:
        for field, value in (("jobId", self.job_id), ("taskId", self.task_id)):
            if value is not None and (problem := reserved_id(value)):
                raise errors.InvalidInput(f"{field}: {problem}", field=field)
        if self.provider is not msgspec.UNSET and (problem := unregistered(self.provider)):
            raise errors.InvalidInput(f"provider: {problem}", field="provider")
        if (self.job_id is None) == (self.task_id is None):
            raise errors.InvalidInput("query: give exactly one of jobId or taskId", field="query")

    def task(self) -> tuple[str, str] | None:
        """(provider, task id) when the job is asked for by its provider task."""
        if self.task_id is None:
            return None
        return (DEFAULT_PROVIDER if self.provider is msgspec.UNSET else self.provider, self.task_id)
