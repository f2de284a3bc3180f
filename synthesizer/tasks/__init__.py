"""Stage 6, tasks (v2): task families, each drafting its own kind of task over the environment's world,
gated by the runtime's own gates.

Modules: ``world`` (people, records, descriptions in the user's words, namesakes and look-alikes),
``wording`` (phrasings, human dates and money), ``checks`` (state checks from a gold diff, plus
independent ones), ``family`` (the interface and registry), one module per family — ``action``,
``multi_goal``, ``information``, ``conditional``, ``refusal`` — and ``synthesis`` (the loop: shares,
gates, dedupe, splits). The import order below is the registry's.
"""

from __future__ import annotations

# isort: off
from . import action, multi_goal, refusal, information, conditional  # noqa: F401

# isort: on
from .checks import checks_from_diff
from .family import FAMILIES, Family, register
from .synthesis import SynthesisStats, TaskSynthesizer, effect_signature, synthesize_tasks, wording_signature
from .world import Draft, World

__all__ = [
    "FAMILIES",
    "Family",
    "register",
    "Draft",
    "World",
    "SynthesisStats",
    "TaskSynthesizer",
    "synthesize_tasks",
    "checks_from_diff",
    "effect_signature",
    "wording_signature",
]
