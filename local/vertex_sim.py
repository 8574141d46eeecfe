"""A loopback simulator of Vertex AI's Gemini `generateContent` endpoint, for the Gemini prompt writer.

    POST /v1beta1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent

It answers as Vertex does (`candidates[0].content.parts[0].text`, `usageMetadata`), so the real
`google-genai` SDK, pointed here by VERTEX_BASE_URL (`HttpOptions.base_url`), cannot tell. What it
answers is set by `mode`:

    valid      a JSON answer built from the request (occupation line, camera sentence, style line)
    invalid    the same answer with a quoted CV phrase in it (fails the prompt checks)
    malformed  text that is not JSON
    error      HTTP 500 with a Vertex-style error body
    slow       holds the request `hold_s` seconds (longer than the writer's timeout), then answers

Each request body is kept in `bodies` so tests can see what was sent.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from local.simcore import SimHandler, SimServer

MODES = ("valid", "invalid", "malformed", "error", "slow")
_PATH = re.compile(
    r"^/v1beta1/projects/[^/]+/locations/[^/]+/publishers/google/models/([^/:]+):generateContent$"
)


def answer_for(request: str, mode: str) -> dict[str, Any]:
    """The structured answer Gemini would give for the writer's request text."""
    occupation = re.search(r"Occupation: ([^(\n]+?) \(", request)
    camera = re.search(r"Camera sentence to keep: (.+?)\.\n", request)
    style = re.search(r"Style: (.+?)\.\n", request)
    noun = occupation[1] if occupation and occupation[1] != "not recognised" else "professional"
    answer = {
        "subject": f"A confident {noun}",
        "action": "turns from a busy workbench and explains the next step to a colleague",
        "setting": "a sunlit workplace full of the tools of the trade",
        "camera": camera[1] if camera else "The camera pushes in steadily",
        "style": style[1] if style else "Clean, polished look, soft key light",
    }
    if mode == "invalid":
        answer["action"] = 'holds up a sign reading "best in class" to a colleague'
    return answer


class VertexHandler(SimHandler):
    server: VertexSim

    def do_POST(self) -> None:
        match = _PATH.match(self.path.split("?")[0])
        body = self.read_body()
        if match is None:
            return self.send_json(
                404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
            )
        request = json.loads(body or b"{}")
        self.server.bodies.append(request)
        mode = self.server.mode
        if mode == "error":
            return self.send_json(500, {"error": {"code": 500, "message": "internal", "status": "INTERNAL"}})
        if mode == "slow":
            time.sleep(self.server.hold_s)
        text = "".join(p.get("text", "") for c in request.get("contents", []) for p in c.get("parts", []))
        answer = "this is not json" if mode == "malformed" else json.dumps(answer_for(text, mode))
        return self.send_json(200, _response(answer, match[1]))


def _response(text: str, model: str) -> dict[str, Any]:
    return {
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 600, "candidatesTokenCount": 80, "totalTokenCount": 680},
        "modelVersion": model,
    }


class VertexSim(SimServer):
    """The simulator: `mode` picks the answer (see the module docstring)."""

    def __init__(self, *, port: int = 0, mode: str = "valid", hold_s: float = 3.0) -> None:
        super().__init__(VertexHandler, port=port)
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid: {', '.join(MODES)}")
        self.mode = mode
        self.hold_s = hold_s
        self.bodies: list[dict[str, Any]] = []
