"""The judge through a real HTTP round trip: judge_chat's httpx backend against tests/fakes/judge_server.py."""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image

from bookbug_assets.quality import judge as judge_module
from bookbug_assets.quality.judge import judge_failures
from bookbug_assets.quality.judge_backends import build_judge, parse_judge_spec
from bookbug_assets.quality.judge_chat import JUDGE_MODELS, ChatCompletionsJudge, JudgeConfigurationError
from bookbug_assets.quality.judge_models import JudgeThresholds
from bookbug_assets.quality.judge_preview import PreviewJudge
from tests.fakes.judge_server import FakeChatJudge
from tests.quality.judge_helpers import (  # noqa: F401 - store: a fixture; the rest for test_judge_gate.py too
    BLUE, HERO, PAGE, PIP, RED, SCENE, SHEET, STYLE, ask, page as _png, store,
)

MODEL = "openai/gpt-4o-2024-08-06"


@pytest.fixture
def fake():
    with FakeChatJudge() as server:
        yield server


@pytest.fixture
def judge(fake):
    backend = ChatCompletionsJudge(MODEL, fake.api_key, base_url=fake.base_url)
    yield backend
    backend.close()


def _images(body: dict) -> list[str]:
    return [p["image_url"]["url"] for m in body["messages"] if isinstance(m["content"], list)
            for p in m["content"] if p["type"] == "image_url"]


def test_a_valid_answer_is_a_typed_verdict_with_its_cost_and_the_documented_request(fake, judge, store):
    verdict = ask(judge, store)
    assert verdict.ok and verdict.calls == 1 and not verdict.cache_hit
    assert verdict.cost_usd == pytest.approx(0.0125)  # the service's usage.cost
    pip = verdict.answer.character("pip")
    assert pip.present and pip.identity == 4
    assert {f.feature: f.status for f in pip.features} == {"red knitted scarf": "present", "big round ears": "present"}
    assert verdict.judge == f"openrouter:{MODEL}" and verdict.judge_version == judge_module.JUDGE_VERSION
    assert judge_failures(verdict, JudgeThresholds()) == []
    assert verdict.table() == [{"character": "pip", "present": True, "identity": 4, "differences": "none",
                                "features": "red knitted scarf: present, big round ears: present"}]
    (request,) = fake.completions()
    body = request.json
    assert body["model"] == MODEL and body["temperature"] == 0 and fake.rejections == []
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    urls = _images(body)
    assert len(urls) == 3 and all(u.startswith("data:image/png;base64,") for u in urls)
    assert base64.b64decode(urls[0].split(",", 1)[1]) == PAGE  # the page first, as the prompt says
    assert body["response_format"]["type"] == "json_schema" and body["response_format"]["json_schema"]["strict"]
    assert request.header("Authorization") == f"Bearer {fake.api_key}"


def test_a_wrong_coloured_scarf_is_named_and_fails_the_thresholds(judge, store):
    verdict = ask(judge, store, image=_png(BLUE))
    pip = verdict.answer.character("pip")
    assert {f.feature: f.status for f in pip.features}["red knitted scarf"] == "absent"
    assert any("scarf" in d for d in pip.differences)
    failures = judge_failures(verdict, JudgeThresholds())
    assert "judge: pip lacks red knitted scarf" in failures


def test_a_malformed_answer_is_asked_again_once_with_what_was_wrong(fake, judge, store):
    fake.script = ["malformed"]
    verdict = ask(judge, store)
    assert verdict.ok and verdict.calls == 2 and verdict.cost_usd == pytest.approx(0.025)
    first, second = (r.json["messages"][1]["content"][0]["text"] for r in fake.completions())
    assert "could not be used" not in first
    assert "could not be used: not valid JSON" in second


@pytest.mark.parametrize("kind, why", [("malformed", "not valid JSON"), ("prose", "not valid JSON"),
                                       ("wrong_type", "identity"), ("wrong_features", "features")])
def test_two_malformed_answers_are_a_judge_error_that_fails_the_gate(fake, judge, store, kind, why):
    fake.script = [kind, kind]
    verdict = ask(judge, store)
    assert not verdict.ok and verdict.answer is None and verdict.error_kind == "malformed"
    assert len(fake.completions()) == 2 and verdict.calls == 2  # retried once, not more
    assert verdict.cost_usd == pytest.approx(0.025)  # both calls are paid for
    assert why in verdict.error and verdict.reason == verdict.error
    (failure,) = judge_failures(verdict, JudgeThresholds())
    assert failure.startswith("judge error: malformed answer 2 of 2") and why in failure
    again = ask(judge, store)  # the same question is not paid for twice: the error is kept
    assert again.cache_hit and not again.ok and again.calls == 0 and len(fake.completions()) == 2


@pytest.mark.parametrize("kind", ["refusal", "content_filter"])
def test_a_refusal_is_a_judge_error_without_a_second_call(fake, judge, store, kind):
    fake.script = [kind]
    verdict = ask(judge, store)
    assert not verdict.ok and verdict.error_kind == "refused" and verdict.calls == 1
    assert verdict.error.startswith("the judge refused to answer")
    assert judge_failures(verdict, JudgeThresholds())[0].startswith("judge error: the judge refused")


def test_verdicts_are_cached_by_image_references_prompt_version_and_model(fake, judge, store, monkeypatch):
    first = ask(judge, store)
    again = ask(judge, store)
    assert again.cache_hit and again.calls == 0 and again.cost_usd == 0.0 and again.answer == first.answer
    assert len(fake.completions()) == 1
    ask(judge, store, image=_png(RED, 500))  # another image
    ask(judge, store, sheet=_png(RED, 400))  # another sprite sheet
    ask(judge, store, cards=(PIP.model_copy(update={"features": ("red knitted scarf",)}),))  # another card
    assert len(fake.completions()) == 4
    monkeypatch.setattr(judge_module, "JUDGE_VERSION", "judge-v-next")  # another prompt version
    assert not ask(judge, store).cache_hit
    mini = ChatCompletionsJudge("openai/gpt-4o-mini", fake.api_key, base_url=fake.base_url)  # another model
    assert not ask(mini, store).cache_hit
    assert len(fake.completions()) == 6


def test_an_unreachable_judge_fails_the_gate_and_is_asked_again_next_run(fake, judge, store):
    fake.fail_status = [503]
    verdict = ask(judge, store)
    assert not verdict.ok and verdict.error_kind == "unavailable" and "HTTP 503" in verdict.error
    assert judge_failures(verdict, JudgeThresholds())
    assert ask(judge, store).ok  # an outage is not kept as the image's verdict
    assert len(fake.completions()) == 2


def test_the_key_never_leaves_the_authorization_header(fake, judge, store, tmp_path):
    fake.script = ["malformed", "malformed"]
    verdicts = [ask(judge, store), ask(judge, store, image=_png(BLUE))]
    fake.fail_status = [500]
    verdicts.append(ask(judge, store, image=_png(RED, 300)))
    wrong_key = ChatCompletionsJudge(MODEL, "sk-or-v1-wrong-key", base_url=fake.base_url)
    verdicts.append(ask(wrong_key, store, image=_png(RED, 310)))
    assert "HTTP 401" in verdicts[-1].error and "sk-or-v1-wrong-key" not in verdicts[-1].error
    assert fake.api_key not in repr(judge) and fake.api_key not in str(vars(judge).get("price"))
    for verdict in verdicts:
        assert fake.api_key not in verdict.model_dump_json()
    stored = [p.read_bytes() for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert stored and not any(fake.api_key.encode() in data for data in stored)


def test_without_a_reported_cost_a_call_costs_the_table_price(judge, store, fake):
    fake.cost_per_call = None
    verdict = ask(judge, store)
    assert verdict.cost_usd == pytest.approx(JUDGE_MODELS[MODEL].price_per_call_usd()) and verdict.cost_usd > 0


def test_lettering_and_safety_concerns_fail_the_thresholds(fake, judge, store):
    fake.script = ["lettering", "safety"]
    lettering = ask(judge, store)
    unsafe = ask(judge, store, image=_png(RED, 500))
    assert any(f.startswith("judge: lettering in the art") for f in judge_failures(lettering, JudgeThresholds()))
    assert judge_failures(lettering, JudgeThresholds(allow_lettering=True)) == []
    assert any("not suitable for a child" in f for f in judge_failures(unsafe, JudgeThresholds()))


def test_print_size_pages_are_sent_at_most_1024_px(fake, judge, store):
    ask(judge, store, image=_png(RED, 2048))
    url = _images(fake.completions()[0].json)[0]
    assert max(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).size) == 1024


def test_the_fake_refuses_requests_off_the_documented_shape(fake):
    good = {"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Characters that must appear, as cards (JSON):\n[]"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + base64.b64encode(PAGE).decode()}}]}]}
    bad_image = json.loads(json.dumps(good))
    bad_image["messages"][0]["content"][1]["image_url"]["url"] = base64.b64encode(PAGE).decode()  # no data: prefix
    wrong_mime = json.loads(json.dumps(good))
    wrong_mime["messages"][0]["content"][1]["image_url"]["url"] = "data:image/jpeg;base64," + \
        base64.b64encode(PAGE).decode()
    loose_schema = {**good, "response_format": {"type": "json_schema", "json_schema": {
        "name": "v", "strict": True, "schema": {"type": "object", "properties": {"a": {"type": "string"}}}}}}
    headers = {"Authorization": f"Bearer {fake.api_key}"}
    url = fake.base_url + "/chat/completions"
    assert httpx.post(url, json=good, headers=headers).status_code == 200
    for body in (bad_image, wrong_mime, loose_schema, {**good, "modle": MODEL}, {**good, "model": "nope/none"}):
        response = httpx.post(url, json=body, headers=headers)
        assert response.status_code == 400 and response.json()["error"]["message"]
    assert httpx.post(url, json=good, headers={"Authorization": "Bearer other"}).status_code == 401
    assert len(fake.rejections) == 5


def test_a_judge_is_chosen_by_name_and_a_bad_name_names_the_variable():
    assert parse_judge_spec("") is None and parse_judge_spec("none") is None
    assert parse_judge_spec("openrouter") == ("openrouter", "openai/gpt-4o-2024-08-06")
    assert isinstance(build_judge("preview"), PreviewJudge)
    for bad in ("vertex:gemini", "openrouter:openai/gpt-2", "openrouter"):
        with pytest.raises(JudgeConfigurationError, match="BOOKBUG_JUDGE"):
            build_judge(bad, api_key=None)
    with pytest.raises(JudgeConfigurationError, match="no price"):
        ChatCompletionsJudge("acme/unknown", "key")
