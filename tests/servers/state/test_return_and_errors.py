"""The plain-text return shape, argument errors in the environment's own words, and both over real MCP."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters

from servers import Environment, SpecError
from tests.conftest import ENVFLEET, MINI_SEED, MINI_SPEC, write_env

ORDER_ID = {
    "type": "string",
    "description": "The order id.",
    "pattern": "^ORD-[0-9]{4}$",
    "errorMessage": "Give the order id as ORD- and 4 digits, e.g. ORD-0041.",
}

TOOLS: list[dict[str, Any]] = [
    {
        "name": "order_summary",
        "description": "One line about an order.",
        "kind": "read",
        "parameters": {
            "type": "object",
            "properties": {
                "order_id": ORDER_ID,
                "loud": {"type": "boolean", "description": "Shout it."},
            },
            "required": ["order_id"],
        },
        "steps": [
            {
                "kind": "return",
                "shape": "text",
                "sql": "SELECT CASE WHEN :loud THEN upper(s) ELSE s END FROM (SELECT 'Order ' || order_id || ': ' || "
                "quantity || ' x ' || sku AS s FROM orders WHERE order_id = :order_id)",
            }
        ],
    },
    {
        "name": "is_gift",
        "description": "Whether an order is a gift, as text.",
        "kind": "read",
        "parameters": {"type": "object", "properties": {"order_id": ORDER_ID}, "required": ["order_id"]},
        "steps": [{"kind": "return", "shape": "text", "sql": "SELECT gift FROM orders WHERE order_id = :order_id"}],
    },
    {
        "name": "bulk_restock",
        "description": "Add stock to several items.",
        "kind": "write",
        "parameters": {
            "type": "object",
            "properties": {
                "skus": {
                    "type": "array",
                    "description": "SKUs.",
                    "items": {"type": "string"},
                    "errorMessage": 'List the SKUs as strings, e.g. ["A-1"].',
                },
                "delta": {"type": "integer", "description": "Change per SKU."},
            },
            "required": ["skus", "delta"],
        },
        "steps": [
            {
                "kind": "for_each",
                "over": "skus",
                "as": "sku",
                "steps": [
                    {
                        "kind": "exec",
                        "sql": "UPDATE items SET stock = stock + :delta WHERE sku = :sku",
                        "affects": "one",
                        "error": "No item {sku}.",
                    }
                ],
            },
            {"kind": "return", "shape": "text", "sql": "SELECT group_concat(sku || '=' || stock, ' ') FROM items"},
        ],
    },
]


def spec() -> dict[str, Any]:
    data = copy.deepcopy(MINI_SPEC)
    data["tools"].extend(copy.deepcopy(TOOLS))
    return data


@pytest.fixture(scope="module")
def env() -> Environment:
    return Environment.from_spec(spec(), copy.deepcopy(MINI_SEED))


def test_a_text_return_is_the_plain_string(env: Environment) -> None:
    result = env.call(env.new_state(), "order_summary", {"order_id": "ORD-0041"})
    assert not result.is_error
    assert result.structured == {"text": "Order ORD-0041: 1 x A-1"}
    assert result.text == "Order ORD-0041: 1 x A-1"  # the content: no JSON around it
    loud = env.call(env.new_state(), "order_summary", {"order_id": "ORD-0041", "loud": True})
    assert loud.text == "ORDER ORD-0041: 1 X A-1"


def test_a_text_return_of_nothing_is_empty_and_booleans_read_as_words(env: Environment) -> None:
    assert env.call(env.new_state(), "order_summary", {"order_id": "ORD-9999"}).structured == {"text": ""}
    assert env.call(env.new_state(), "is_gift", {"order_id": "ORD-0041"}).text == "false"


def test_a_text_return_has_a_string_output_schema(env: Environment) -> None:
    assert env.tool_descriptors["order_summary"].output_schema == {
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
    }


def test_a_row_with_a_column_named_text_is_still_json() -> None:
    data = spec()
    data["tools"].append(
        {
            "name": "note_of",
            "description": "An order's note.",
            "kind": "read",
            "parameters": {"type": "object", "properties": {}},
            "steps": [{"kind": "return", "shape": "row", "sql": "SELECT 'hi' AS text"}],
        }
    )
    env = Environment.from_spec(data, copy.deepcopy(MINI_SEED))
    assert env.call(env.new_state(), "note_of").text == '{"text":"hi"}'


@pytest.mark.parametrize(
    "args",
    [{"order_id": "41"}, {"order_id": 41}, {}, {"order_id": "ORD-\u0000041"}],
    ids=["pattern", "type", "missing", "nul"],
)
def test_an_error_message_words_every_problem_with_its_parameter(env: Environment, args: dict[str, Any]) -> None:
    result = env.call(env.new_state(), "order_summary", args)
    assert result.is_error and result.structured["error"]["type"] == "invalid_arguments"
    assert result.structured["error"]["problems"] == [
        "order_id: Give the order id as ORD- and 4 digits, e.g. ORD-0041."
    ]
    assert result.text.startswith(
        "Invalid arguments for order_summary: order_id: Give the order id as ORD- and 4 digits, e.g. ORD-0041. "
        "Parameters: "
    )  # one full stop, whether or not the spec's wording ends with one


def test_other_parameters_keep_the_generic_wording(env: Environment) -> None:
    result = env.call(env.new_state(), "order_summary", {"order_id": "ORD-0041", "loud": "yes"})
    assert result.structured["error"]["problems"] == ['loud: "yes" is not of type "boolean"']
    nested = env.call(env.new_state(), "bulk_restock", {"skus": ["A-1", 7], "delta": 1})
    assert nested.structured["error"]["problems"] == ['skus: List the SKUs as strings, e.g. ["A-1"].']


@pytest.mark.parametrize("bad", [7, "", {"required": "x"}])
def test_an_error_message_must_be_a_string(bad: Any) -> None:
    data = spec()
    data["tools"][-1]["parameters"]["properties"]["delta"]["errorMessage"] = bad
    with pytest.raises(SpecError) as caught:
        Environment.from_spec(data, copy.deepcopy(MINI_SEED))
    assert [str(i) for i in caught.value.issues] == [
        "tools.bulk_restock.parameters.delta.errorMessage: must be a non-empty string: the message an agent reads "
        "when this argument is wrong or missing"
    ]


@pytest.mark.anyio
async def test_text_and_loop_errors_reach_an_mcp_client(tmp_path: Path) -> None:
    folder = write_env(tmp_path / "mini", spec(), copy.deepcopy(MINI_SEED))
    server = StdioServerParameters(
        command=ENVFLEET[0], args=[*ENVFLEET[1:], "serve", str(folder), "--log-level", "warning"]
    )
    async with Client(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["order_summary"].output_schema["required"] == ["text"]

        text = await client.call_tool("order_summary", {"order_id": "ORD-0041"})
        assert not text.is_error
        assert [c.text for c in text.content] == ["Order ORD-0041: 1 x A-1"]
        assert text.structured_content == {"text": "Order ORD-0041: 1 x A-1"}

        done = await client.call_tool("bulk_restock", {"skus": ["A-1", "C-3"], "delta": 2})
        assert done.content[0].text == "A-1=5 B-2=0 C-3=42"

        failed = await client.call_tool("bulk_restock", {"skus": ["A-1", "B-2", "Z-9"], "delta": 1})
        assert failed.is_error and failed.content[0].text == "No item Z-9."
        assert '"element":2' in failed.content[1].text and '"rule":"affects"' in failed.content[1].text
        after = await client.call_tool("bulk_restock", {"skus": [], "delta": 0})
        assert after.content[0].text == "A-1=5 B-2=0 C-3=42"  # the failed call changed nothing

        worded = await client.call_tool("order_summary", {"order_id": "41"})
        assert worded.is_error and "Give the order id as ORD- and 4 digits" in worded.content[0].text
