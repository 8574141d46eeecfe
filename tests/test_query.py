"""The status check's query (msgspec): the same rules and 400s as the pydantic bodies."""

from __future__ import annotations

import pytest

import errors
from web.http import parse
from web.query import StatusQuery
from web.schemas import CancelRequest


def problem(query: dict[str, str]) -> errors.InvalidInput:
    with pytest.raises(errors.InvalidInput) as caught:
        parse(StatusQuery, query, "query")
    return caught.value


def test_a_job_id_or_a_task_id_with_its_provider():
    assert parse(StatusQuery, {"jobId": "j1"}, "query").job_id == "j1"
    assert parse(StatusQuery, {"jobId": "j1"}, "query").task() is None
    assert parse(StatusQuery, {"taskId": "t1"}, "query").task() == ("runwayml", "t1")
    assert parse(StatusQuery, {"taskId": "t1", "provider": "heygen"}, "query").task() == ("heygen", "t1")


def test_values_are_stripped_as_the_bodies_are():
    assert parse(StatusQuery, {"jobId": "  j1 "}, "query").job_id == "j1"
    assert parse(CancelRequest, {"jobId": "  j1 "}).job_id == "j1"


@pytest.mark.parametrize(
    ("query", "field", "says"),
    [
        ({}, "query", "give exactly one of jobId or taskId"),
        ({"jobId": "a", "taskId": "b"}, "query", "give exactly one of jobId or taskId"),
        ({"jobId": "../x"}, "jobId", "^[A-Za-z0-9_-]{1,128}$"),
        ({"jobId": "x" * 129}, "jobId", "^[A-Za-z0-9_-]{1,128}$"),
        ({"taskId": "__x__"}, "taskId", "ids of the form __...__ are reserved"),
        ({"taskId": "t1", "provider": "sora"}, "provider", "must be one of heygen, runwayml"),
        ({"jobId": "j1", "jobid": "j1"}, "query", "unknown field `jobid`"),
    ],
)
def test_each_bad_query_is_a_400_naming_its_field(query, field, says):
    error = problem(query)
    assert error.details["field"] == field
    assert error.message.startswith(f"{field}: ")
    assert says in error.message


@pytest.mark.parametrize("value", ["../x", "__x__"])
def test_the_id_rules_are_the_bodies_rules(value):
    with pytest.raises(errors.InvalidInput) as caught:
        parse(CancelRequest, {"jobId": value})
    body, query = caught.value, problem({"jobId": value})
    assert body.details["field"] == query.details["field"] == "jobId"
    if value == "__x__":
        assert body.message == query.message  # one rule, one message
