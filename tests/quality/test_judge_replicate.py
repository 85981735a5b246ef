"""The judge on Replicate through the real `replicate` client, against the judge models of
tests/fakes/replicate_server.py."""

from __future__ import annotations

import io
import logging

import pytest
from replicate.exceptions import ReplicateError

from bookbug_assets.providers.replicate import ReplicateProvider
from bookbug_assets.quality.judge import judge_failures
from bookbug_assets.quality.judge_backends import build_judge, parse_judge_spec
from bookbug_assets.quality.judge_chat import JudgeConfigurationError
from bookbug_assets.quality.judge_jobs import JobPolicy, JudgeInputError
from bookbug_assets.quality.judge_models import JudgeThresholds
from bookbug_assets.quality.judge_models_table import REPLICATE_JUDGE_MODELS
from bookbug_assets.quality.judge_replicate import ReplicateJudge
from bookbug_assets.providers.base import ProviderSettings
from tests.fakes.replicate_server import FakeReplicate
from tests.providers.cloud_helpers import replicate_job_finishing_at_the_cancel
from tests.quality.judge_helpers import (  # noqa: F401 - store: a fixture
    BLUE, HERO, PAGE, PIP, RED, SCENE, SHEET, STYLE, ask, ask_and_die_while_waiting,
    ask_as_the_job_finishes_at_the_cancel, ask_past_the_deadline, everything_written, page, store,
)

TOKEN = "r8_judge_secret_token_0123456789abcdef"
MODEL = "openai/gpt-4o"


@pytest.fixture
def fake():
    with FakeReplicate(api_token=TOKEN) as server:
        yield server


def judge_on(fake, store, model=MODEL, **kw) -> ReplicateJudge:
    provider = ReplicateProvider(api_token=TOKEN, base_url=fake.url, poll_interval_s=0.02)
    return ReplicateJudge(model, provider, store=store, **kw)


@pytest.mark.parametrize("model", list(REPLICATE_JUDGE_MODELS))
def test_a_correct_page_passes_with_each_models_own_fields_and_its_token_cost(fake, store, model):
    spec = REPLICATE_JUDGE_MODELS[model]
    verdict = ask(judge_on(fake, store, model), store)

    assert verdict.ok and verdict.calls == 1, verdict.error
    assert judge_failures(verdict, JudgeThresholds()) == []
    assert {f.feature: f.status for f in verdict.answer.character("pip").features} == {
        "red knitted scarf": "present", "big round ears": "present"}
    (created,) = fake.created_predictions
    sent = created["input"]
    assert created["model"] == model and sent[spec.system_field].startswith("You are the quality judge")
    images = sent[spec.images_field]
    if spec.images == "single":  # one picture: the page and both references side by side, and a note saying so
        assert isinstance(images, str) and sent["prompt"].startswith("The images are placed side by side")
    else:
        assert len(images) == 3 and all(url.startswith(fake.url + "/v1/files/") for url in images)
    metrics = fake.job(created["id"]).tokens
    assert verdict.cost_usd == pytest.approx(spec.cost_usd(*metrics)) and verdict.cost_usd > 0


def test_a_wrong_coloured_scarf_is_named_in_the_differences(fake, store):
    verdict = ask(judge_on(fake, store), store, image=page(BLUE))

    pip = verdict.answer.character("pip")
    assert {f.feature: f.status for f in pip.features}["red knitted scarf"] == "absent"
    assert any("red knitted scarf" in d and "blue" in d for d in pip.differences), pip.differences
    assert "judge: pip lacks red knitted scarf" in judge_failures(verdict, JudgeThresholds())


def test_a_malformed_answer_is_asked_once_more_then_is_a_judge_error(fake, store):
    fake.judge_script = ["malformed", "prose"]
    verdict = ask(judge_on(fake, store), store)

    assert not verdict.ok and verdict.error_kind == "malformed" and verdict.calls == 2
    assert len(fake.created_predictions) == 2
    assert judge_failures(verdict, JudgeThresholds())[0].startswith("judge error: malformed answer 2 of 2")


def test_an_answer_in_a_code_fence_is_read_and_a_refusal_is_the_judges(fake, store):
    fake.judge_script = ["fenced"]
    fenced = ask(judge_on(fake, store), store)
    assert fenced.ok and fenced.calls == 1  # read as it came, not asked again
    fake.judge_script = ["refusal"]
    verdict = ask(judge_on(fake, store), store, image=page(RED, 500))
    assert verdict.error_kind == "refused" and "E005" in verdict.error and verdict.cost_usd > 0


def test_a_journaled_job_is_resumed_so_the_call_is_not_paid_twice(fake, store, monkeypatch):
    fake.latency_s = 0.5
    ask_and_die_while_waiting(judge_on(fake, store), store, monkeypatch)
    (created,) = fake.created_predictions
    (journaled,) = store.list("journal/")
    assert store.read_json(journaled) == {"job_id": created["id"], "service": "replicate", "model": MODEL}

    verdict = ask(judge_on(fake, store), store)  # a new process: same call, same journal key
    assert verdict.ok and len(fake.created_predictions) == 1  # collected, not created again
    assert store.list("journal/") == []


def test_the_deadline_cancels_the_prediction_and_the_verdict_says_unavailable(fake, store):
    ask_past_the_deadline(fake, judge_on(fake, store, policy=JobPolicy(deadline_s=0.3)), store)
    assert fake.cancelled == {fake.created_predictions[0]["id"]}


def test_a_prediction_finishing_at_the_deadline_is_the_answer_not_a_new_call(fake, store, monkeypatch):
    judge = judge_on(fake, store, policy=JobPolicy(deadline_s=0.3))
    cancelled = ask_as_the_job_finishes_at_the_cancel(judge, store, replicate_job_finishing_at_the_cancel, monkeypatch)
    assert cancelled == [fake.created_predictions[0]["id"]] and len(fake.created_predictions) == 1


def test_a_create_the_service_refuses_is_an_input_error_and_busy_creates_are_retried(fake, store):
    judge = judge_on(fake, store, policy=JobPolicy(base_delay_s=0.01))
    fake.fail_next_creates = [503, 503]
    assert ask(judge, store).ok and len(fake.created_predictions) == 1
    fake.fail_next_creates = [422]
    with pytest.raises(JudgeInputError, match="refused"):
        judge.ask(_request())


def test_the_token_is_in_no_reply_verdict_repr_or_log(fake, store, caplog):
    caplog.set_level(logging.DEBUG)
    judge = judge_on(fake, store, policy=JobPolicy(deadline_s=0.3, base_delay_s=0.01))
    verdict = ask(judge, store)
    fake.fail_next_creates = [500] * 10
    failed = ask(judge, store, image=page(RED, 300))

    assert failed.error_kind == "unavailable"
    assert not any(TOKEN in text for text in everything_written([verdict, failed], judge, caplog, store))


def test_the_fake_refuses_what_the_real_model_would(fake):
    client = fake.client()
    url = client.files.create(io.BytesIO(PAGE), filename="p.png", content_type="image/png").urls["get"]
    good = {"prompt": "hi", "image_input": [url]}
    client.predictions.create(model=MODEL, input=good)
    for bad in ({**good, "max_tokens": 10}, {"image_input": [url]}, {**good, "temperature": 3}):
        with pytest.raises(ReplicateError) as caught:
            client.predictions.create(model=MODEL, input=bad)
        assert caught.value.status == 422
    with pytest.raises(ReplicateError):  # one `image`, not a list, on the Claude model
        client.predictions.create(model="anthropic/claude-4-sonnet", input={"prompt": "hi", "image": [url]})


def test_a_bad_judge_setting_names_the_variable_and_the_families():
    assert parse_judge_spec("replicate") == ("replicate", "openai/gpt-4o")
    assert parse_judge_spec("replicate:anthropic/claude-4-sonnet") == ("replicate", "anthropic/claude-4-sonnet")
    for bad in ("replicat:openai/gpt-4o", "replicate:openai/gpt-2", "replicate:black-forest-labs/flux-dev"):
        with pytest.raises(JudgeConfigurationError, match="BOOKBUG_JUDGE") as caught:
            parse_judge_spec(bad)
        assert "replicate" in str(caught.value) and "fal" in str(caught.value)
    with pytest.raises(JudgeConfigurationError, match="BOOKBUG_JUDGE.*REPLICATE_API_TOKEN"):
        build_judge("replicate:openai/gpt-4o")
    judge = build_judge("replicate", providers=ProviderSettings(replicate_api_token=TOKEN))
    assert isinstance(judge, ReplicateJudge) and TOKEN not in repr(judge)


def _request():
    from bookbug_assets.quality.judge import JUDGE_SYSTEM, JudgeRequest, answer_schema, judge_prompt
    roles = ["sprite_sheet", "hero_page"]
    return JudgeRequest(image=page(RED, 320), references=(("sprite_sheet", SHEET), ("hero_page", HERO)),
                        cards=(PIP,), scene=SCENE, style=STYLE, system=JUDGE_SYSTEM,
                        prompt=judge_prompt((PIP,), SCENE, STYLE, roles), answer_schema=answer_schema((PIP,)))

