"""RunwayML forgets a task we deleted: a GET after our own DELETE may answer 404 (runwayml-api.md).

The race: the owner's cancel has ended the job and sent the DELETE, but the task record is not
closed yet (`jobs.access.stop_task` writes it next), and a poll already on its way reads the task.
"""

from __future__ import annotations

from providers.base import Status


def cancelled_between_delete_and_record(stack) -> tuple[str, str]:
    """A RunwayML job cancelled and deleted at Runway, whose task record is still open."""
    answer = stack.generate(provider="runwayml")
    assert answer.status_code == 202, answer.get_json()
    job_id = answer.get_json()["jobId"]
    task_id = stack.deps.store.get_job(job_id).current_attempt.task_id
    stack.deps.store.finish_job(job_id, Status.CANCELLED, {"code": "cancelled", "message": "cancelled"})
    assert stack.runway.delete_task(task_id)
    stack.runway.tasks.pop(task_id)  # "will not be able to be fetched again": GET answers 404
    return job_id, task_id


def test_a_404_after_our_own_delete_never_reopens_or_falls_back_the_cancelled_job(stack):
    job_id, _ = cancelled_between_delete_and_record(stack)
    answers = stack.deliver_polls(advance_s=10)
    assert [a.status_code for a in answers] == [200]
    job = stack.deps.store.get_job(job_id)
    assert (job.status, [str(a.status) for a in job.attempts]) == ("cancelled", ["cancelled"])
    assert stack.heygen.count("POST", "/v3/videos") == 0
    assert stack.queue.tasks == []


def test_a_404_after_our_own_delete_closes_the_task_record_as_cancelled_not_failed(stack):
    _, task_id = cancelled_between_delete_and_record(stack)
    stack.deliver_polls(advance_s=10)
    task = stack.deps.store.get_task("runwayml", task_id)
    assert (task.status, task.failure_code) == ("cancelled", None)
