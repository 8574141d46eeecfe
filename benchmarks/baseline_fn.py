"""Baseline functions for the benchmarks, deployed the same way as main.py's.

`read_job` does only what every status check must: one read of the job document, answered as JSON.
It verifies no token and checks no owner. `read_job_with_settings` does the same after loading the
project's settings (`config.load_settings`, msgspec), as every function of main.py does first: the
cold start's measure of what the settings alone cost. `hello` is the smallest function there is.
"""

from __future__ import annotations

import functools
import json
import os

import flask
import functions_framework


@functools.lru_cache(maxsize=1)
def _client():
    from google.cloud import firestore

    return firestore.Client(project=os.environ["GOOGLE_CLOUD_PROJECT"])


@functions_framework.http
def read_job(request: flask.Request) -> flask.Response:
    return _read(request, os.environ.get("JOBS_COLLECTION", "enhanced_video_jobs"))


@functions_framework.http
def read_job_with_settings(request: flask.Request) -> flask.Response:
    from config import load_settings

    return _read(request, load_settings(os.environ).jobs_collection)


def _read(request: flask.Request, collection: str) -> flask.Response:
    snap = _client().collection(collection).document(request.args.get("jobId", "-")).get()
    if not snap.exists:
        return flask.Response('{"error": "not found"}', status=404, mimetype="application/json")
    return flask.Response(json.dumps({"job": snap.to_dict()}, default=str), mimetype="application/json")


@functions_framework.http
def hello(request: flask.Request) -> str:
    return "hello"
