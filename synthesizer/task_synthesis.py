"""Stage 6, tasks: the entry point kept where the pipeline and the LLM backend import it from; the
families, wording, distractors and gates live in ``synthesizer.tasks``."""

from __future__ import annotations

from typing import Any

from servers.spec import GoldCall, UserScenario

from .tasks import SynthesisStats, TaskSynthesizer, checks_from_diff, synthesize_tasks
from .tasks.world import Draft

__all__ = ["SynthesisStats", "synthesize_tasks", "checks_from_diff"]

_Synthesizer = TaskSynthesizer


def _Draft(  # noqa: N802 -- the old draft's positional form, for callers that build one by hand
    family: str, template: str, who: str, request: str, user: UserScenario, gold: list[GoldCall], **more: Any
) -> Draft:
    return Draft(family, template, who, request, user, gold, **more)
