"""LLM settings: command-line flags over environment variables over a TOML file over defaults.

Environment variables: ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``, ``ENVFLEET_MODEL`` (every stage),
``ENVFLEET_MODEL_<STAGE>`` (one stage, e.g. ``ENVFLEET_MODEL_PARAPHRASE``), ``ENVFLEET_LLM_CONFIG``
(the TOML file) and ``ENVFLEET_LLM_CACHE`` (the response cache folder). The file::

    [llm]
    base_url = "http://127.0.0.1:8000/v1"
    model = "Qwen/Qwen2.5-72B-Instruct"
    api_key_env = "OPENAI_API_KEY"      # or api_key = "..."
    temperature = 0.2
    seed = 7
    timeout = 120                        # seconds per request
    max_retries = 4                      # on 429, 5xx, timeouts and dropped connections
    concurrency = 4                      # requests in flight at once
    max_rounds = 3                       # repair rounds per proposal
    json_mode = true                     # send response_format {"type": "json_object"}
    cache_dir = ".envfleet-cache/llm"

    [llm.models]                         # a model per stage
    paraphrase = "gpt-4.1-mini"

    [llm.prices]                         # USD per million tokens, for the cost column
    "gpt-4.1-mini" = { input = 0.4, output = 1.6 }
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import LLMConfigError

__all__ = ["STAGES", "LLMConfig", "Price"]

STAGES = ("judge", "domain", "spec", "tools", "seed", "paraphrase", "review")
"""Stages a model can drive: the corpus judge (stateful? which topic?), domain modeling — or
``spec``, a whole environment with its tasks written by the model — extra tools, seed values,
task wording, and the optional review of recorded tool calls."""

_SETTINGS = {
    "base_url": str,
    "model": str,
    "api_key": str,
    "api_key_env": str,
    "temperature": float,
    "seed": int,
    "timeout": float,
    "max_retries": int,
    "concurrency": int,
    "max_rounds": int,
    "json_mode": bool,
    "cache_dir": str,
    "backoff": float,
    "max_tokens": int,
}


@dataclass(frozen=True)
class Price:
    input: float = 0.0  # USD per million prompt tokens
    output: float = 0.0  # USD per million completion tokens


@dataclass(frozen=True)
class LLMConfig:
    base_url: str = "https://api.openai.com/v1"
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    temperature: float = 0.2
    seed: int | None = None
    timeout: float = 120.0
    max_retries: int = 4
    backoff: float = 1.0  # seconds before the first retry; doubles each time (a Retry-After header wins)
    concurrency: int = 4
    max_rounds: int = 3
    max_tokens: int | None = None
    json_mode: bool = True
    cache_dir: Path = Path(".envfleet-cache/llm")
    replay: bool = False  # answer only from the cache; never call the endpoint
    models: dict[str, str] = field(default_factory=dict)
    prices: dict[str, Price] = field(default_factory=dict)

    def model_for(self, stage: str) -> str:
        model = self.models.get(stage) or self.model
        if not model:
            raise LLMConfigError(
                f"no model for the {stage!r} stage: set ENVFLEET_MODEL (or ENVFLEET_MODEL_{stage.upper()}), "
                "--model, or `model` in the [llm] section of the config file"
            )
        return model

    @classmethod
    def load(cls, path: Path | None = None, environ: dict[str, str] | None = None, **overrides: Any) -> LLMConfig:
        """File (``path`` or ``ENVFLEET_LLM_CONFIG``), then environment variables, then ``overrides``
        (the command line; ``None`` values are ignored)."""
        env = dict(os.environ if environ is None else environ)
        values: dict[str, Any] = {}
        models: dict[str, str] = {}
        prices: dict[str, Price] = {}
        path = path or (Path(env["ENVFLEET_LLM_CONFIG"]) if env.get("ENVFLEET_LLM_CONFIG") else None)
        key_env = "OPENAI_API_KEY"
        if path is not None:
            section = _read_section(path)
            for name, value in section.items():
                if name == "models":
                    models.update(_stage_models(value, f"{path}: [llm.models]"))
                elif name == "prices":
                    prices.update(_prices(value, f"{path}: [llm.prices]"))
                elif name in _SETTINGS:
                    values[name] = _typed(name, value, f"{path}: llm.{name}")
                else:
                    raise LLMConfigError(
                        f"{path}: unknown setting llm.{name} (known: {', '.join(sorted(_SETTINGS))}, models, prices)"
                    )
            key_env = values.pop("api_key_env", key_env)
        for name, variable in (
            ("base_url", "OPENAI_BASE_URL"),
            ("model", "ENVFLEET_MODEL"),
            ("cache_dir", "ENVFLEET_LLM_CACHE"),
        ):
            if env.get(variable):
                values[name] = env[variable]
        if env.get(key_env):
            values["api_key"] = env[key_env]
        for stage in STAGES:
            if env.get(f"ENVFLEET_MODEL_{stage.upper()}"):
                models[stage] = env[f"ENVFLEET_MODEL_{stage.upper()}"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "cache_dir" in values:
            values["cache_dir"] = Path(values["cache_dir"])
        config = cls(**values, models=models, prices=prices)
        if (
            config.concurrency < 1
            or config.max_rounds < 1
            or config.max_retries < 0
            or config.timeout <= 0
            or config.backoff < 0
        ):
            raise LLMConfigError(
                "concurrency and max_rounds must be at least 1, max_retries and backoff at least 0, timeout positive"
            )
        return config

    def with_overrides(self, **values: Any) -> LLMConfig:
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def _read_section(path: Path) -> dict[str, Any]:
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise LLMConfigError(f"cannot read the LLM config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise LLMConfigError(f"{path} is not valid TOML: {e}") from None
    section = document.get("llm")
    if not isinstance(section, dict):
        raise LLMConfigError(f"{path} has no [llm] section")
    return section


def _typed(name: str, value: Any, where: str) -> Any:
    kind = _SETTINGS[name]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise LLMConfigError(f"{where} must be a {kind.__name__}, not {value!r}")
    return value


def _stage_models(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise LLMConfigError(f'{where} must be a table of stage = "model"')
    for stage, model in value.items():
        if stage not in STAGES:
            raise LLMConfigError(f"{where}: unknown stage {stage!r} (stages: {', '.join(STAGES)})")
        if not isinstance(model, str) or not model:
            raise LLMConfigError(f"{where}.{stage} must be a model name")
    return dict(value)


def _prices(value: Any, where: str) -> dict[str, Price]:
    if not isinstance(value, dict):
        raise LLMConfigError(f"{where} must be a table of model = {{ input = ..., output = ... }}")
    prices = {}
    for model, price in value.items():
        if not isinstance(price, dict) or set(price) - {"input", "output"}:
            raise LLMConfigError(
                f"{where}.{model!r} must be {{ input = USD per 1M tokens, output = USD per 1M tokens }}"
            )
        try:
            prices[model] = Price(float(price.get("input", 0)), float(price.get("output", 0)))
        except (TypeError, ValueError):
            raise LLMConfigError(f"{where}.{model!r}: input and output are numbers (USD per 1M tokens)") from None
    return prices
