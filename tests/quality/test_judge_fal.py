"""The judge on fal through the real `fal_client`, against tests/fakes/fal_server.py's OpenRouter vision route."""

from __future__ import annotations

import logging

import pytest

from bookbug_assets.providers.base import ProviderSettings
from bookbug_assets.providers.fal import FalProvider
from bookbug_assets.quality.judge import judge_failures
from bookbug_assets.quality.judge_backends import build_judge, parse_judge_spec
from bookbug_assets.quality.judge_chat import JudgeConfigurationError
from bookbug_assets.quality.judge_fal import FalJudge
from bookbug_assets.quality.judge_jobs import JobPolicy
from bookbug_assets.quality.judge_models import JudgeThresholds
from bookbug_assets.quality.judge_models_table import FAL_JUDGE_MODELS, FAL_VISION_ENDPOINT
from tests.fakes.fal_server import FakeFal
from tests.providers.cloud_helpers import fal_job_finishing_at_the_cancel
from tests.quality.judge_helpers import (  # noqa: F401 - store: a fixture
    BLUE, RED, ask, ask_and_die_while_waiting, ask_as_the_job_finishes_at_the_cancel, ask_past_the_deadline,
    everything_written, page, store,
)

KEY = "fal-judge-key-id:fal-judge-key-secret-0123456789"
MODEL = "google/gemini-2.5-flash"


@pytest.fixture
def fake():
    with FakeFal(fal_key=KEY) as server:
        yield server


def judge_on(fake, store, model=MODEL, upload=True, **kw) -> FalJudge:
    provider = FalProvider(key=KEY, base_url=fake.url, poll_interval_s=0.02, upload_references=upload)
    return FalJudge(model, provider, store=store, **kw)


@pytest.mark.parametrize("model", list(FAL_JUDGE_MODELS))
def test_a_correct_page_passes_with_the_documented_request_and_the_reported_cost(fake, store, model):
    verdict = ask(judge_on(fake, store, model), store)

    assert verdict.ok and verdict.calls == 1, verdict.error
    assert judge_failures(verdict, JudgeThresholds()) == []
    (sent,) = fake.submitted
    assert sent["endpoint"] == FAL_VISION_ENDPOINT and sent["input"]["model"] == model
    assert sent["input"]["system_prompt"].startswith("You are the quality judge")
    assert len(sent["input"]["image_urls"]) == 3 and sent["input"]["temperature"] == 0
    assert verdict.cost_usd == pytest.approx(fake.judge_cost_usd)  # fal's usage.cost, not the estimate


def test_inline_images_and_a_missing_usage_cost_fall_back_to_the_token_price(fake, store):
    fake.judge_cost_usd = None
    verdict = ask(judge_on(fake, store, upload=False), store)
    assert verdict.ok and fake.uploads == []
    assert all(url.startswith("data:image/png;base64,") for url in fake.submitted[0]["input"]["image_urls"])
    result = fake.job(fake.submitted[0]["request_id"]).result["usage"]
    assert verdict.cost_usd == pytest.approx(FAL_JUDGE_MODELS[MODEL].cost_usd(result["prompt_tokens"],
                                                                               result["completion_tokens"]))


def test_a_wrong_coloured_scarf_is_named_in_the_differences(fake, store):
    verdict = ask(judge_on(fake, store), store, image=page(BLUE))
    pip = verdict.answer.character("pip")
    assert any("red knitted scarf" in d and "blue" in d for d in pip.differences), pip.differences
    assert "judge: pip lacks red knitted scarf" in judge_failures(verdict, JudgeThresholds())


def test_a_malformed_answer_is_asked_once_more_then_is_a_judge_error(fake, store):
    fake.judge_script = ["wrong_type", "malformed"]
    verdict = ask(judge_on(fake, store), store)
    assert verdict.error_kind == "malformed" and verdict.calls == 2 and len(fake.submitted) == 2
    assert judge_failures(verdict, JudgeThresholds())[0].startswith("judge error: malformed answer 2 of 2")
    fake.judge_script = ["prose"]
    assert ask(judge_on(fake, store), store, image=page(RED, 500)).ok  # the second answer is fine


def test_a_content_policy_refusal_is_the_judges_refusal(fake, store):
    fake.judge_script = ["refusal"]
    verdict = ask(judge_on(fake, store), store)
    assert verdict.error_kind == "refused" and "content_policy_violation" in verdict.error


def test_a_journaled_request_is_resumed_so_the_call_is_not_paid_twice(fake, store, monkeypatch):
    fake.latency_s = 0.5
    ask_and_die_while_waiting(judge_on(fake, store), store, monkeypatch)
    (sent,) = fake.submitted
    (journaled,) = store.list("journal/")
    assert store.read_json(journaled)["job_id"] == f"{FAL_VISION_ENDPOINT}|{sent['request_id']}"

    verdict = ask(judge_on(fake, store), store)
    assert verdict.ok and len(fake.submitted) == 1 and store.list("journal/") == []


def test_the_deadline_cancels_the_request(fake, store):
    ask_past_the_deadline(fake, judge_on(fake, store, policy=JobPolicy(deadline_s=0.3)), store)
    assert fake.cancelled == {fake.submitted[0]["request_id"]}


def test_a_request_finishing_at_the_deadline_is_the_answer_not_a_new_call(fake, store, monkeypatch):
    judge = judge_on(fake, store, policy=JobPolicy(deadline_s=0.3))
    cancelled = ask_as_the_job_finishes_at_the_cancel(judge, store, fal_job_finishing_at_the_cancel, monkeypatch)
    assert cancelled == [f"{FAL_VISION_ENDPOINT}|{fake.submitted[0]['request_id']}"] and len(fake.submitted) == 1


def test_the_key_is_in_no_reply_verdict_repr_or_log(fake, store, caplog):
    caplog.set_level(logging.DEBUG)
    judge = judge_on(fake, store, policy=JobPolicy(deadline_s=0.5, base_delay_s=0.01))
    verdict = ask(judge, store)
    fake.fail_next_submits = [503] * 10
    failed = ask(judge, store, image=page(RED, 300))
    assert failed.error_kind == "unavailable"
    texts = everything_written([verdict, failed], judge, caplog, store)
    for secret in (KEY, *KEY.split(":")):
        assert not any(secret in text for text in texts)


def test_the_fake_refuses_what_the_real_endpoint_would(fake, monkeypatch):
    fake.patch_client(monkeypatch)
    client = fake.client()
    fake.validation_stage = "submit"
    client.submit(FAL_VISION_ENDPOINT, {"image_urls": ["data:image/png;base64,AAAA"], "prompt": "hi", "model": MODEL})
    good = {"image_urls": ["data:image/png;base64,AAAA"], "prompt": "hi", "model": MODEL}
    for bad in ({**good, "max_completion_tokens": 9}, {k: v for k, v in good.items() if k != "model"},
                {**good, "image_urls": []}, {**good, "model": "acme/unknown"}):
        with pytest.raises(Exception) as caught:
            client.submit(FAL_VISION_ENDPOINT, bad)
        assert getattr(caught.value, "status_code", None) == 422


def test_a_bad_judge_setting_names_the_variable_and_the_families():
    assert parse_judge_spec("fal") == ("fal", MODEL)
    assert parse_judge_spec(f"fal:{FAL_VISION_ENDPOINT}:openai/gpt-4o") == ("fal", "openai/gpt-4o")
    assert parse_judge_spec("fal:anthropic/claude-sonnet-4.5") == ("fal", "anthropic/claude-sonnet-4.5")
    for bad in ("fal:fal-ai/any-llm", f"fal:{FAL_VISION_ENDPOINT}:acme/x", "fall:google/gemini-2.5-flash"):
        with pytest.raises(JudgeConfigurationError, match="BOOKBUG_JUDGE") as caught:
            parse_judge_spec(bad)
        assert "openrouter" in str(caught.value) and "replicate" in str(caught.value)
    with pytest.raises(JudgeConfigurationError, match="FAL_KEY"):
        build_judge("fal")
    judge = build_judge("fal", providers=ProviderSettings(fal_key=KEY))
    assert isinstance(judge, FalJudge) and KEY not in repr(judge)
