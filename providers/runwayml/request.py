"""RunwayML request mapping (pure): model choice, the create body, local validation, cost.

`choose_model` takes `request.model` when given; else 1080p -> veo3.1 (premium) or veo3.1_fast
(standard); an input image at standard quality -> gen4_turbo; otherwise gen4.5. Aspect ratio x
resolution -> `ratio` (1080p only on veo models). The prompt text is sent as given: the camera move
is already one sentence of it (written by `providers/prompts`; the API has no motion field); with
an input image the body carries the motion-only prompt of `providers.prompts.image_prompt` instead. Veo
models take 4, 6 or 8 seconds: `wire_duration` rounds a request to the nearest of those (ties round
up; 9-10 s become 8 s) rather than rejecting it; gen4.5 and gen4_turbo take 2-10 s as asked. A veo
body always carries `audio` (RUNWAYML_VEO_AUDIO), and `estimate` prices that same choice (`rate_key`).

`validation_problem` names the first field the API would refuse, so a bad request never costs a
round trip; the prompt limit is `CAPABILITIES.max_prompt_units` UTF-16 code units (`utf16_len`); an
input image URL is judged by `providers.urls.image_url_problem` (with IMAGE_URL_HOSTS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from config import ConfigError, Settings
from providers.base import Capabilities, CostEstimate, VideoRequest
from providers.urls import image_url_problem

NAME = "runwayml"
TEXT_TO_VIDEO, IMAGE_TO_VIDEO = "text_to_video", "image_to_video"
BOTH = frozenset({TEXT_TO_VIDEO, IMAGE_TO_VIDEO})
ENDPOINTS = {"gen4.5": BOTH, "gen4_turbo": frozenset({IMAGE_TO_VIDEO}), "veo3.1": BOTH, "veo3.1_fast": BOTH}
VEO_MODELS = frozenset({"veo3.1", "veo3.1_fast"})
PROMPT_OPTIONAL_WITH_IMAGE = frozenset({"gen4_turbo", *VEO_MODELS})
RATIOS = {
    ("16:9", "720p"): "1280:720",
    ("9:16", "720p"): "720:1280",
    ("16:9", "1080p"): "1920:1080",
    ("9:16", "1080p"): "1080:1920",
}
VEO_DURATIONS = (4, 6, 8)
GEN_DURATION_RANGE = (2, 10)
MAX_SEED = 4_294_967_295

CAPABILITIES = Capabilities(
    models=tuple(ENDPOINTS),
    min_duration_s=GEN_DURATION_RANGE[0],
    max_duration_s=GEN_DURATION_RANGE[1],
    aspect_ratios=("16:9", "9:16"),
    resolutions=("720p", "1080p"),
    formats=("mp4",),
    max_prompt_units=1000,  # promptText, in UTF-16 code units
    supports_image_input=True,
    supports_cancel=True,
    idempotent_create=False,
)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units, as the API counts `promptText` (lone surrogates count one)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def choose_model(request: VideoRequest) -> str:
    """The model for a request: explicit, else by resolution, input image and quality."""
    if request.model is not None:
        return request.model
    if request.resolution == "1080p":
        return "veo3.1" if request.quality == "premium" else "veo3.1_fast"
    if request.image_url and request.quality == "standard":
        return "gen4_turbo"
    return "gen4.5"


def endpoint_for(request: VideoRequest) -> str:
    return IMAGE_TO_VIDEO if request.image_url else TEXT_TO_VIDEO


def wire_duration(model: str, duration_s: int) -> int:
    """Seconds sent to the API: veo models get the nearest of 4/6/8 (ties up), others as asked."""
    if model in VEO_MODELS:
        return min(VEO_DURATIONS, key=lambda allowed: (abs(allowed - duration_s), -allowed))
    return duration_s


def request_body(request: VideoRequest, model: str, *, audio: bool = True) -> dict[str, Any]:
    """The JSON body of a create call (the request must have passed `validation_problem`).

    veo models always say whether they make sound (`audio`, RUNWAYML_VEO_AUDIO): its default is not
    documented and it changes the price, so `estimate` prices the same choice.
    """
    body: dict[str, Any] = {
        "model": model,
        "ratio": RATIOS[(request.aspect_ratio, request.resolution)],
        "duration": wire_duration(model, request.duration_s),
    }
    prompt = _image_prompt(request) if request.image_url else request.prompt_text.strip()
    if prompt:
        body["promptText"] = prompt
    if request.image_url:
        body["promptImage"] = request.image_url
    if request.seed is not None:
        body["seed"] = request.seed
    if model in VEO_MODELS:
        body["audio"] = audio
    else:
        body["contentModeration"] = {"publicFigureThreshold": "auto"}
    return body


def _image_prompt(request: VideoRequest) -> str:
    """With an input image the image fixes the look: the motion-and-camera prompt of the same style."""
    from providers.prompts import STYLES, image_prompt  # here: providers.prompts imports this module

    style = STYLES.get(request.style)
    if style is None or not request.prompt_text.strip():
        return request.prompt_text.strip()
    return image_prompt(request.style, request.camera_motion or style.motion, request.camera_intensity)


def _model_problem(request: VideoRequest, model: str) -> str | None:
    if model not in ENDPOINTS:
        return f"model: {model!r} is not supported; use one of {', '.join(ENDPOINTS)}"
    if endpoint_for(request) not in ENDPOINTS[model]:
        return f"image_url: {model} makes video from an image only; give image_url or another model"
    return None


def _shape_problem(request: VideoRequest, model: str) -> str | None:
    if problem := CAPABILITIES.problem(request):
        return problem
    if request.resolution == "1080p" and model not in VEO_MODELS:
        return f"resolution: {model} makes 720p only; 1080p needs veo3.1 or veo3.1_fast"
    return None


def _duration_problem(request: VideoRequest, model: str) -> str | None:
    low, high = (VEO_DURATIONS[0], 10) if model in VEO_MODELS else GEN_DURATION_RANGE
    if not low <= request.duration_s <= high:
        return f"duration_s: {model} takes {low}-{high} seconds, got {request.duration_s}"
    return None


def _prompt_problem(request: VideoRequest, model: str) -> str | None:
    prompt = request.prompt_text.strip()
    optional = request.image_url and model in PROMPT_OPTIONAL_WITH_IMAGE
    if not prompt and not optional:
        return f"prompt_text: {model} needs a prompt"
    units, limit = utf16_len(prompt), CAPABILITIES.max_prompt_units
    if units > limit:
        return f"prompt_text: {units} UTF-16 code units; the limit is {limit}"
    return None


def _input_problem(request: VideoRequest, model: str, image_hosts: Sequence[str]) -> str | None:
    if request.image_url and (problem := image_url_problem(request.image_url, image_hosts)):
        return f"image_url: {problem}"
    if request.seed is not None and not 0 <= request.seed <= MAX_SEED:
        return f"seed: must be between 0 and {MAX_SEED}"
    return None


def validation_problem(request: VideoRequest, model: str, image_hosts: Sequence[str] = ()) -> str | None:
    """The first reason the API would refuse this request, naming the field; None when fine.

    `image_hosts` is IMAGE_URL_HOSTS: with it, an input image must come from one of those hosts.
    """
    for check in (_model_problem, _shape_problem, _duration_problem, _prompt_problem):
        if problem := check(request, model):
            return problem
    return _input_problem(request, model, image_hosts)


def rate_key(model: str, audio: bool) -> str:
    """The RUNWAYML_CREDITS_PER_SECOND entry that prices `model`: `veo3.1+audio` for a veo model
    sent with `audio: true` (dearer), else the model's name."""
    return f"{model}+audio" if audio and model in VEO_MODELS else model


def estimate(model: str, duration_s: int, settings: Settings) -> CostEstimate:
    """Credits from the configured per-second rate (for the audio `request_body` sends), in USD too."""
    key = rate_key(model, settings.runwayml_veo_audio)
    rate = settings.runwayml_credits_per_second.get(key)
    if rate is None:
        raise ConfigError(f"RUNWAYML_CREDITS_PER_SECOND has no rate for {key}")
    credits = rate * wire_duration(model, duration_s)
    return CostEstimate(credits=credits, usd=round(credits * settings.runwayml_usd_per_credit, 4))
