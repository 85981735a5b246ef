"""FakeChatJudge: a local stand-in for an OpenAI-compatible chat-completions API (OpenRouter's
`POST /api/v1/chat/completions`) serving vision models, for bookbug_assets.quality.judge_chat.

    with FakeChatJudge() as fake:
        judge = ChatCompletionsJudge("openai/gpt-4o-2024-08-06", fake.api_key, base_url=fake.base_url)

Strict about the documented request shape (https://openrouter.ai/docs/api-reference/overview, OpenAI's
chat-completions reference): known top-level keys only; `model` one it serves; `messages` of system/user/assistant
roles whose `content` is a string or a list of parts `{"type": "text", "text"}` / `{"type": "image_url",
"image_url": {"url", "detail"?}}`, each image URL `https://...` or a `data:image/<png|jpeg|webp|gif>;base64,` URL
whose bytes decode to that kind of image; `response_format` `json_object` or `json_schema` (with `strict`, every
object must list all its properties as required and forbid others, as strict structured outputs demand). A
request that breaks the shape gets 400 with `{"error": {"code", "message"}}`, and the reason is kept in
`rejections`; a wrong key gets 401.

What it answers is what the Replicate and fal fakes' judges answer (_judge_answers.py: the cards read from the
prompt, image 1 looked at, a feature naming a colour present only if the character shows that colour).
`script` lists the next answers' kinds: those of _judge_answers.answer_text (ok, fenced, malformed, prose,
wrong_type, wrong_features, lettering, safety), refusal (`message.refusal`, content null) and content_filter
(`finish_reason: content_filter`). `fail_status` lists HTTP errors to answer first.
`usage.cost` is `cost_per_call` (None: omitted, as from an API that reports no cost).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import time
from typing import Any

from PIL import Image

from ._http import FakeHTTPServer, RecordedRequest, Response, json_response, random_id
from ._judge_answers import answer_text, cards_from_text, page_pixels, seen_answer

PATH = "/api/v1/chat/completions"
TOP_LEVEL = {"model", "messages", "response_format", "temperature", "max_tokens", "max_completion_tokens", "top_p",
             "seed", "stream", "stop"}
DATA_URL = re.compile(r"^data:image/(png|jpeg|webp|gif);base64,([A-Za-z0-9+/=]+)$")
PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP", "gif": "GIF"}


def _error(status: int, message: str) -> Response:
    return json_response({"error": {"code": status, "message": message}}, status)


def _strict_schema_problem(schema: Any, where: str = "schema") -> str | None:
    if not isinstance(schema, dict):
        return f"{where} is not an object"
    if schema.get("type") == "object":
        props = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return f"{where}: strict mode needs additionalProperties false"
        if sorted(schema.get("required", [])) != sorted(props):
            return f"{where}: strict mode needs every property in required"
        for name, sub in props.items():
            if problem := _strict_schema_problem(sub, f"{where}.{name}"):
                return problem
    if schema.get("type") == "array" and (problem := _strict_schema_problem(schema.get("items"), f"{where}[]")):
        return problem
    return None


def _image_problem(url: Any) -> str | None:
    if not isinstance(url, str):
        return "image_url.url must be a string"
    if url.startswith("https://"):
        return None
    match = DATA_URL.match(url)
    if not match:
        return "image_url.url must be an https URL or a data:image/...;base64, URL"
    try:
        data = base64.b64decode(match.group(2), validate=True)
        image = Image.open(io.BytesIO(data))
        image.verify()
    except (binascii.Error, ValueError, OSError):
        return "image_url.url holds bytes that are not an image"
    if image.format != PIL_FORMATS[match.group(1)]:
        return f"image_url.url says image/{match.group(1)} but holds {image.format}"
    return None


def request_problem(body: Any, models: set[str]) -> str | None:
    """Why `body` is not a chat-completions request this service takes, or None."""
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    if unknown := sorted(set(body) - TOP_LEVEL):
        return f"unknown fields: {unknown}"
    if body.get("model") not in models:
        return f"{body.get('model')!r} is not a valid model ID"
    if body.get("stream"):
        return "this fake serves no streams"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages must be a non-empty list"
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant") \
                or set(message) - {"role", "content", "name"}:
            return f"messages[{n}] must be {{role, content}} with role system, user or assistant"
        content = message.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list) or not content:
            return f"messages[{n}].content must be a string or a non-empty list of parts"
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text" and set(part) == {"type", "text"} and isinstance(part["text"], str):
                continue
            if kind == "image_url" and message["role"] == "user" and set(part) == {"type", "image_url"} \
                    and isinstance(part["image_url"], dict) and set(part["image_url"]) <= {"url", "detail"} \
                    and part["image_url"].get("detail", "auto") in ("auto", "low", "high"):
                if problem := _image_problem(part["image_url"].get("url")):
                    return f"messages[{n}]: {problem}"
                continue
            return f"messages[{n}]: a content part must be {{type: text, text}} or {{type: image_url, image_url: " \
                   f"{{url}}}} (images in user messages only), not {json.dumps(part)[:80]}"
    fmt = body.get("response_format")
    if fmt is not None:
        if not isinstance(fmt, dict) or fmt.get("type") not in ("text", "json_object", "json_schema"):
            return "response_format.type must be text, json_object or json_schema"
        if fmt["type"] == "json_schema":
            spec = fmt.get("json_schema")
            if not isinstance(spec, dict) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", str(spec.get("name", ""))) \
                    or not isinstance(spec.get("schema"), dict) or set(spec) - {"name", "strict", "schema",
                                                                                  "description"}:
                return "response_format.json_schema must be {name, strict?, schema}"
            if spec.get("strict") and (problem := _strict_schema_problem(spec["schema"])):
                return f"response_format: {problem}"
    temperature = body.get("temperature", 1)
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        return "temperature must be a number in [0, 2]"
    if "max_tokens" in body and (not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1):
        return "max_tokens must be a positive integer"
    return None


def _first_image(body: dict) -> bytes:
    for message in body["messages"]:
        for part in message["content"] if isinstance(message["content"], list) else []:
            if part["type"] == "image_url":
                return base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
    raise ValueError("no image in the request")


def _answer(body: dict) -> dict:
    """The answer a careful judge would give about what the request's page shows (_judge_answers.seen_answer)."""
    text = "\n".join(part["text"] for m in body["messages"] if isinstance(m["content"], list)
                     for part in m["content"] if part["type"] == "text")
    return seen_answer(page_pixels(_first_image(body)), cards_from_text(text))


class FakeChatJudge(FakeHTTPServer):
    server_name = "fake-chat-judge"

    def __init__(self, *, api_key: str = "sk-or-v1-fake-judge-key-0123456789",
                 models: tuple[str, ...] = ("openai/gpt-4o-2024-08-06", "openai/gpt-4o-mini",
                                            "google/gemini-2.0-flash-001", "google/gemini-2.5-flash"),
                 cost_per_call: float | None = 0.0125, latency_s: float = 0.0, tls: bool = False) -> None:
        super().__init__(tls=tls)
        self.api_key, self.models = api_key, set(models)
        self.cost_per_call, self.latency_s = cost_per_call, latency_s
        self.script: list[str] = []
        self.fail_status: list[int] = []
        self.rejections: list[str] = []
        self.answered: list[str] = []  # the kind of each answer given

    @property
    def base_url(self) -> str:
        return self.url + "/api/v1"

    def completions(self) -> list[RecordedRequest]:
        return self.requests_to("POST", PATH)

    def handle(self, req: RecordedRequest) -> Response:
        if req.method != "POST" or req.path != PATH:
            return _error(404, "Not Found")
        if req.header("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "No auth credentials found")
        with self.lock:
            status = self.fail_status.pop(0) if self.fail_status else None
        if status is not None:
            return _error(status, "Provider returned error")
        if problem := request_problem(req.json, self.models):
            self.rejections.append(problem)
            return _error(400, problem)
        with self.lock:
            kind = self.script.pop(0) if self.script else "ok"
            self.answered.append(kind)
        if self.latency_s:
            time.sleep(self.latency_s)
        return json_response(self._completion(req.json, kind))

    def _completion(self, body: dict, kind: str) -> dict:
        content: str | None = None
        refusal, finish = None, "stop"
        if kind == "refusal":
            refusal = "I'm sorry, I can't help with that request."
        elif kind == "content_filter":
            finish = "content_filter"
        else:
            content = answer_text(_answer(body), kind)
        usage: dict[str, Any] = {"prompt_tokens": 2900, "completion_tokens": 350, "total_tokens": 3250}
        if self.cost_per_call is not None:
            usage["cost"] = self.cost_per_call
        return {"id": f"gen-{random_id(20)}", "object": "chat.completion", "created": int(time.time()),
                "model": body["model"], "usage": usage,
                "choices": [{"index": 0, "finish_reason": finish,
                             "message": {"role": "assistant", "content": content, "refusal": refusal}}]}
