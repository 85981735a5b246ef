"""quality_judge: the vision-language judge the quality gates ask (quality/judge.py), as a Dagster resource.

Off by default. `BOOKBUG_JUDGE=<family>:<model>` turns it on (quality/judge_backends.parse_judge_spec lists the
families and models); in the launchpad it is the `quality_judge` resource's `judge` field. The key is read from
the family's usual variable (JUDGE_KEY_VARIABLES, or BOOKBUG_JUDGE_API_KEY over all of them) as a Dagster EnvVar,
so the UI and the run's config show the variable's name, never its value; the key reaches only the backend
object (judge_backends.build_judge). A bad BOOKBUG_JUDGE fails loading the definitions with an error naming the
variable. With no judge the weight-free gates work as before, and a run's log says so once.
"""

import os
import threading
from collections import OrderedDict

import dagster as dg
from pydantic import PrivateAttr

from bookbug_assets.providers.base import ConfigurationError, ProviderSettings
from bookbug_assets.quality.judge import JudgeBackend
from bookbug_assets.quality.judge_backends import build_judge, parse_judge_spec
from bookbug_assets.storage import ArtifactStore

JUDGE_VARIABLE = "BOOKBUG_JUDGE"
KEY_OVERRIDE = "BOOKBUG_JUDGE_API_KEY"
BASE_URL_VARIABLE = "BOOKBUG_JUDGE_BASE_URL"
# The variable each family's key is usually in; families with no key (preview) are absent.
JUDGE_KEY_VARIABLES = {"openrouter": "OPENROUTER_API_KEY", "replicate": "REPLICATE_API_TOKEN", "fal": "FAL_KEY"}
NO_JUDGE = ("no quality judge configured (set BOOKBUG_JUDGE=<family>:<model> to judge characters, features, "
            "lettering and safety): the weight-free quality gates alone decide")


class QualityJudge(dg.ConfigurableResource):
    """Which quality judge the gates ask, if any. `judge`: `<family>:<model>`, or empty for none."""

    judge: str = ""
    api_key: str | None = None  # an EnvVar: the UI shows the variable's name only
    base_url: str | None = None  # another endpoint for the family's API (a gateway, a local fake)

    _built: dict = PrivateAttr(default_factory=dict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def backend(self, store: ArtifactStore | None = None,
                providers: ProviderSettings | None = None) -> JudgeBackend | None:
        """The judge, built once per run (its client is shared by the page threads); None for none. `store` keeps
        a replicate/fal judge's job journal; `providers` are the image providers' settings (their token, key and
        endpoints serve those judges too). One built without a store (for a price) is kept apart."""
        slot = "store" if store is not None else "no store"
        with self._lock:
            if slot not in self._built:
                try:
                    self._built[slot] = build_judge(self.judge, api_key=self.api_key, base_url=self.base_url,
                                                    variable="quality_judge.judge", providers=providers,
                                                    store=store)
                except ValueError as exc:  # JudgeConfigurationError: names the setting, never the key
                    raise ConfigurationError(str(exc)) from None
            return self._built[slot]

    def for_run(self, context, store: ArtifactStore | None = None,
                providers: ProviderSettings | None = None) -> JudgeBackend | None:
        """backend(); the run's log says once which judge, or that there is none."""
        backend = self.backend(store, providers)
        if first_announcement(context.run.run_id):
            context.log.info(NO_JUDGE if backend is None else f"quality judge: {backend.family}:{backend.model}")
        return backend


# Runs whose log has said which judge (a resource may be rebuilt per step). Only the latest are kept: the daemon's
# code server lives for days, and a run's steps ask within minutes of each other, not after hundreds of other runs.
ANNOUNCED_RUNS = 256
_ANNOUNCED: OrderedDict[str, None] = OrderedDict()
_ANNOUNCED_LOCK = threading.Lock()


def first_announcement(run_id: str) -> bool:
    """Whether this is the first time `run_id` asks (so its log should say which judge); remembers it."""
    with _ANNOUNCED_LOCK:
        if run_id in _ANNOUNCED:
            _ANNOUNCED.move_to_end(run_id)
            return False
        _ANNOUNCED[run_id] = None
        while len(_ANNOUNCED) > ANNOUNCED_RUNS:
            _ANNOUNCED.popitem(last=False)
        return True


def judge_from_env() -> QualityJudge:
    """The resource from BOOKBUG_JUDGE; a bad value (or a judge without its key) raises, naming the variable."""
    spec = os.environ.get(JUDGE_VARIABLE, "").strip()
    try:
        parsed = parse_judge_spec(spec, JUDGE_VARIABLE)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if parsed is None:
        return QualityJudge()
    family = parsed[0]
    key_variable = KEY_OVERRIDE if os.environ.get(KEY_OVERRIDE) else JUDGE_KEY_VARIABLES.get(family)
    if key_variable is not None and not os.environ.get(key_variable):
        raise ConfigurationError(f"{JUDGE_VARIABLE}={spec!r} needs an API key in {key_variable} "
                                 f"(or {KEY_OVERRIDE}); none is set")
    return QualityJudge(judge=spec, api_key=dg.EnvVar(key_variable) if key_variable else None,
                        base_url=os.environ.get(BASE_URL_VARIABLE) or None)


@dg.definitions
def judge_defs() -> dg.Definitions:
    return dg.Definitions(resources={"quality_judge": judge_from_env()})
