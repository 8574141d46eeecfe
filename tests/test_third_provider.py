"""A provider is one package and one registration: a made-up third provider, defined and registered
here only, runs a job through generate -> poll -> complete on the in-process stack.

Nothing else in the project is told about it: ranking, budget, task records, polling envelope,
output link lifetime and the poll payload's validation all come from its spec.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import timedelta

import pytest

from providers import registry
from providers.base import (
    Capabilities,
    CostEstimate,
    CreateResult,
    InvalidRequest,
    ProviderHealth,
    ProviderSnapshot,
    Status,
    VideoRequest,
)
from providers.spec import Envelope, ProviderSpec


class AcmeVideo:
    """A provider that finishes every task on its second look (no network)."""

    name = "acme"
    capabilities = Capabilities(
        models=("acme-1",),
        min_duration_s=1,
        max_duration_s=30,
        aspect_ratios=("16:9", "9:16"),
        resolutions=("720p",),
        formats=("mp4",),
        max_prompt_units=2000,
        supports_image_input=False,
        supports_cancel=False,
        idempotent_create=True,
    )

    def __init__(self) -> None:
        self.looks: dict[str, int] = {}
        self.ids = itertools.count(1)
        self.created: list[VideoRequest] = []

    def validate(self, request: VideoRequest) -> None:
        if not request.prompt_text:
            raise InvalidRequest("prompt_text: acme needs a prompt", provider=self.name)

    def create(self, request: VideoRequest) -> CreateResult:
        self.created.append(request)
        task_id = f"acme-{next(self.ids)}"
        self.looks[task_id] = 0
        return CreateResult(task_id, "acme-1", estimated_usd=0.05)

    def get(self, task_id: str) -> ProviderSnapshot:
        self.looks[task_id] += 1
        if self.looks[task_id] < 2:
            return ProviderSnapshot(task_id, Status.PROCESSING, "rendering", progress=40.0)
        url = f"https://cdn.acme.example/{task_id}.mp4"
        return ProviderSnapshot(task_id, Status.COMPLETED, "done", output_urls=(url,), cost_usd=0.05)

    def get_many(self, task_ids: Iterable[str]) -> dict[str, ProviderSnapshot]:
        return {task_id: self.get(task_id) for task_id in task_ids}

    def cancel(self, task_id: str) -> None:
        return None

    def health(self) -> ProviderHealth:
        return ProviderHealth(self.name, reachable=True)

    def estimate_cost(self, request: VideoRequest) -> CostEstimate:
        return CostEstimate(credits=None, usd=0.05)


@pytest.fixture
def acme():
    client = AcmeVideo()
    spec = ProviderSpec(
        name="acme",
        priority=3,
        build=lambda settings: client,
        enabled=lambda settings: True,
        envelope=Envelope(
            first_delay_s=3, min_delay_s=3, max_delay_s=30, factor=2, max_polls=20, max_elapsed_s=600
        ),
        link_ttl=timedelta(hours=6),
        default_quota="10/60",
        records="acme_jobs",
    )
    with registry.registered(spec):
        yield client


def test_a_registered_third_provider_takes_a_job_from_generate_to_completed(acme, stack_factory):
    stack = stack_factory()
    answer = stack.generate(provider="acme", kind="clip")
    assert answer.status_code == 202, answer.get_json()
    job_id = answer.get_json()["jobId"]
    assert answer.get_json()["provider"] == "acme"
    (first,) = stack.queue.tasks
    assert (first.payload["provider"], first.delay_s) == ("acme", 3.0)  # its own envelope

    final = stack.run_until_terminal(job_id, step_s=5)

    assert final["status"] == "completed"
    assert final["output"]["videoUrls"] == ["https://cdn.acme.example/acme-1.mp4"]
    job = stack.deps.store.get_job(job_id)
    assert job.output["expiresAt"] - job.ended_at == timedelta(hours=6)  # its own link lifetime
    task = stack.deps.store.get_task("acme", "acme-1")
    assert (task.status, task.job_id, task.poll_count) == (Status.COMPLETED, job_id, 2)
    assert stack.deps.store.client.collection("acme_jobs").document("acme-1").get().exists
    assert acme.created[0].job_id == job_id


def test_an_unregistered_provider_is_refused_by_name(stack):
    answer = stack.generate(provider="acme")
    error = answer.get_json()["error"]
    assert (answer.status_code, error["code"]) == (400, "invalid_request")
    assert "provider" in error["message"]
    assert "acme" not in registry.names()
