// The CVPlus web app's way of calling the video backend: plain fetch, no build step, no SDK.
//
// On the local stack (`make stack`) this page is served from its own origin, and that server also
// tells it where the functions are (/config.json) and hands it a LOCAL-ONLY test token (/token).
// In the real app both come from the app itself:
//
//   import { getAuth } from "firebase/auth";
//   const FUNCTIONS = "https://us-central1-YOUR-PROJECT.cloudfunctions.net";
//   const idToken = () => getAuth().currentUser.getIdToken();  // refreshed by the SDK when near expiry
//
// With App Check enforced (APP_CHECK=enforce) every call also carries the App Check token:
//
//   import { getToken } from "firebase/app-check";
//   headers["X-Firebase-AppCheck"] = (await getToken(appCheck)).token;
"use strict";

const POLL_MS = 2000;
const TERMINAL = ["completed", "failed", "cancelled", "timed_out"];
const $ = (id) => document.getElementById(id);

let functionsBaseUrl = null;
let pending = null; // {request, key}: a request retried as it was keeps its Idempotency-Key
let current = null; // the job being watched: {jobId, timer}

class ApiError extends Error {
  constructor(status, code, message, retryAfterS) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfterS = retryAfterS;
  }
}

async function localConfig() {
  const response = await fetch("/config.json");
  return (await response.json()).functionsBaseUrl;
}

async function idToken() {
  // LOCAL ONLY: the stack's token issuer. The real app: getAuth().currentUser.getIdToken()
  const response = await fetch("/token");
  return (await response.json()).token;
}

function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

// One call to a function: JSON in and out; every refusal becomes an ApiError with the backend's code.
async function call(path, { method = "GET", body, headers = {} } = {}) {
  const init = { method, headers: { Authorization: `Bearer ${await idToken()}`, ...headers } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(`${functionsBaseUrl}/${path}`, init);
  } catch (err) {
    // the browser hides why: offline, or this origin is not in the backend's CORS_ORIGINS
    throw new ApiError(0, "network_error", `the video service could not be reached (${err.message})`);
  }
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (payload && payload.error) || {};
    const retryAfter = Number(response.headers.get("Retry-After")) || null;
    throw new ApiError(response.status, error.code || `http_${response.status}`, error.message || response.statusText, retryAfter);
  }
  return payload;
}

function show(job) {
  $("status").textContent = `${job.status}: ${job.progress ?? 0}%` + (job.provider ? ` (${job.provider})` : "");
  $("status").dataset.status = job.status;
  $("progress").hidden = false;
  $("progress").value = job.progress ?? 0;
}

function showError(err) {
  $("error").hidden = false;
  $("error").textContent = `${err.message} [${err.code}]`;
  $("error").dataset.code = err.code;
}

function play(job) {
  const output = job.output || {};
  const url = (output.download && output.download.url) || (output.videoUrls || [])[0];
  const gif = (output.gifDownload && output.gifDownload.url) || output.gifUrl;
  if (gif && !url) {
    $("gif").src = gif;
    $("gif").hidden = false;
    return;
  }
  const video = $("video");
  video.addEventListener("loadeddata", () => (video.dataset.loaded = "yes"), { once: true });
  video.addEventListener("error", () => showError(new ApiError(0, "video_unplayable", "the video could not be loaded")), { once: true });
  video.src = url;
  video.hidden = false;
}

// Watch the job: ask runwayml_status_check every few seconds until the job ends. (An app using the
// Firebase JS SDK can listen to video_job_status/{jobId} instead; see the README.)
async function watch(jobId) {
  let delay = POLL_MS;
  try {
    const { job } = await call(`runwayml_status_check?jobId=${encodeURIComponent(jobId)}`);
    show(job);
    if (TERMINAL.includes(job.status)) {
      finish(job);
      return;
    }
  } catch (err) {
    if (err.status !== 429 && err.status !== 503 && err.status !== 0) {
      showError(err);
      finish(null);
      return;
    }
    delay = Math.max(delay, (err.retryAfterS || 0) * 1000); // busy or offline: wait and ask again
  }
  if (current && current.jobId === jobId) current.timer = setTimeout(() => watch(jobId), delay);
}

function finish(job) {
  $("submit").disabled = false;
  $("cancel").hidden = true;
  current = null;
  if (!job) return;
  if (job.status === "completed") play(job);
  else if (job.error) showError(new ApiError(0, job.error.code || job.status, job.error.message || job.status));
}

async function submit(event) {
  event.preventDefault();
  const request = {
    script: $("script").value,
    style: $("style").value,
    format: $("format").value,
    aspectRatio: $("aspect").value,
  };
  const fingerprint = JSON.stringify(request);
  if (!pending || pending.request !== fingerprint) pending = { request: fingerprint, key: newKey() };
  $("error").hidden = true;
  $("video").hidden = $("gif").hidden = true;
  $("submit").disabled = true;
  $("status").textContent = "Sending ...";
  $("status").dataset.status = "sending";
  try {
    const accepted = await call("generate_video", { method: "POST", body: request, headers: { "Idempotency-Key": pending.key } });
    pending = null;
    current = { jobId: accepted.jobId, timer: null };
    $("status").dataset.jobId = accepted.jobId;
    $("cancel").hidden = false;
    show({ status: accepted.status, progress: 0, provider: accepted.provider });
    watch(accepted.jobId);
  } catch (err) {
    $("status").textContent = "Not sent.";
    $("status").dataset.status = "refused";
    showError(err);
    $("submit").disabled = false;
  }
}

async function cancel() {
  if (!current) return;
  const { jobId, timer } = current;
  clearTimeout(timer);
  try {
    const { job } = await call("cancel_video", { method: "POST", body: { jobId } });
    show(job);
    finish(job);
  } catch (err) {
    showError(err);
    watch(jobId);
  }
}

async function start() {
  functionsBaseUrl = await localConfig();
  $("job-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  document.body.dataset.ready = "yes";
}

start();
