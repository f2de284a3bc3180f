"""Simulated users play the task's scenario: facts only when asked, confirmations per ``confirm`` (declining with a
``refuses`` line), the goal when asked what they want; the model-played user gets the same scenario."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from harness.chat import ChatClient, ChatSettings
from harness.users import STOP, LLMUser, ScriptedUser
from servers import Task
from tests.openai_stub import OpenAIStub

GOAL = "Cancel my hold on The Awakening."
REFUSES = "I won't pay a cancellation fee."


def scenario_task(confirm: bool) -> Task:
    return Task.model_validate(
        {
            "id": "user-1",
            "split": "test",
            "instruction": "Hi, I'm Vincent Vasquez. I'd like to drop one of my holds.",
            "user": {
                "persona": "A teenager in a hurry.",
                "known": {"date_of_birth": "2012-01-13", "pickup branch": "Eastside"},
                "unknown": ["hold id"],
                "goal": GOAL,
                "accepts": ["Keeping the hold on Kim."],
                "refuses": [REFUSES],
                "confirm": confirm,
            },
            "gold": [{"tool": "find_member", "arguments": {"name": "Vincent Vasquez"}}],
            "checks": [{"description": "anything", "sql": "SELECT 1"}],
        }
    )


@pytest.mark.anyio
@pytest.mark.parametrize("question", ["Shall I go ahead?", "Do you want me to cancel it now?", "Please confirm."])
async def test_a_confirmation_is_answered_per_the_scenario(question: str) -> None:
    yes = await ScriptedUser(scenario_task(confirm=True)).reply(question)
    no = await ScriptedUser(scenario_task(confirm=False)).reply(question)
    assert yes == "Yes, please go ahead."
    assert no.startswith("No") and REFUSES in no and "go ahead" not in no
    assert STOP not in yes and STOP not in no


@pytest.mark.anyio
async def test_facts_are_revealed_only_when_asked_and_never_invented() -> None:
    user = ScriptedUser(scenario_task(confirm=True))
    assert user.opening() == "Hi, I'm Vincent Vasquez. I'd like to drop one of my holds."
    told = await user.reply("I went ahead and looked into your account.")  # no question, no leave asked
    assert told.endswith(STOP) and "2012-01-13" not in told and "Eastside" not in told
    dob = await user.reply("Could you confirm your date of birth?")  # a fact, not leave to act
    assert dob == "My date_of_birth is 2012-01-13." and "Eastside" not in dob
    unknown = await user.reply("What is the hold id?")
    assert unknown.startswith("I don't know") and "HOLD" not in unknown and "Eastside" not in unknown
    both = await user.reply("Which pickup branch do you use? Shall I go ahead and cancel it?")
    assert both == "My pickup branch is Eastside. Yes, please go ahead."


@pytest.mark.anyio
async def test_the_goal_is_stated_when_the_agent_asks_what_the_user_wants() -> None:
    assert await ScriptedUser(scenario_task(confirm=True)).reply("Hello! How can I help you today?") == GOAL


@pytest.fixture
def stub():
    with OpenAIStub().running() as running:
        yield running


@pytest.mark.anyio
@pytest.mark.parametrize("confirm", [True, False])
async def test_the_model_playing_the_user_gets_the_whole_scenario(stub: OpenAIStub, confirm: bool) -> None:
    stub.script("user", "Sure.")
    async with httpx.AsyncClient() as http:
        user = LLMUser(scenario_task(confirm), ChatClient(ChatSettings("stub-model", base_url=stub.url), http, "user"))
        user.opening()
        assert await user.reply("Shall I go ahead?") == "Sure."
    system: Any = stub.requests_for("user")[0]["messages"][0]["content"]
    assert GOAL in system and "Keeping the hold on Kim." in system and REFUSES in system
    assert "date_of_birth: 2012-01-13" in system and "Never make up a fact" in system
    assert ('say yes ("yes, go ahead")' in system) is confirm and ("say no" in system) is not confirm
