"""Fragments: named SELECTs validated once, expanded into a WITH clause wherever a step reads them."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from servers import Environment, SpecError
from servers.spec.fragments import FragmentSet, expand_fragments, fragment_references
from tests.conftest import MINI_SEED, MINI_SPEC

FRAGMENTS = [
    {
        "name": "item_orders",
        "description": "Each item with how often and how much it was ordered.",
        "sql": "SELECT i.sku, i.name, COUNT(o.order_id) AS orders, COALESCE(SUM(o.quantity), 0) AS ordered "
        "FROM items i LEFT JOIN orders o ON o.sku = i.sku GROUP BY i.sku, i.name;",
    },
    {"name": "popular", "sql": "SELECT sku, name FROM item_orders WHERE orders > 0"},
    {"name": "matching", "sql": "SELECT sku FROM items WHERE name LIKE '%' || :query || '%'"},
]


def read_tool(name: str, sql: str, shape: str = "rows", params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"The {name} probe.",
        "kind": "read",
        "parameters": {"type": "object", "properties": params or {}},
        "steps": [{"kind": "return", "shape": shape, "sql": sql}],
    }


SKU = {"sku": {"type": "string", "description": "The SKU."}}
QUERY = {"query": {"type": "string", "description": "Part of a name."}}


def spec_with(fragments: list[dict[str, Any]], *tools: dict[str, Any]) -> dict[str, Any]:
    spec = copy.deepcopy(MINI_SPEC)
    spec["fragments"] = copy.deepcopy(fragments)
    spec["tools"].extend(copy.deepcopy(list(tools)))
    return spec


TOOLS = [
    read_tool("item_report", "SELECT * FROM item_orders WHERE sku = :sku", "row", SKU),
    read_tool("popular_items", "SELECT sku, name FROM popular ORDER BY sku"),
    read_tool("find", "SELECT sku FROM matching ORDER BY sku", params=QUERY),
    read_tool(
        "counted",
        "-- how many popular items, three times\n"
        "WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM n WHERE k < 3)\n"
        "SELECT k, (SELECT COUNT(*) FROM popular) AS popular FROM n ORDER BY k;",
    ),
    read_tool("shadowed", "WITH popular AS (SELECT 'X-0' AS sku) SELECT sku FROM popular"),
    {
        "name": "restock_popular",
        "description": "One more of every item ever ordered.",
        "kind": "write",
        "steps": [
            {"kind": "require", "sql": "SELECT 1 FROM popular", "error": "Nothing was ever ordered."},
            {"kind": "exec", "sql": "UPDATE items SET stock = stock + 1 WHERE sku IN (SELECT sku FROM popular)"},
            {"kind": "return", "shape": "scalar", "sql": "SELECT SUM(stock) FROM items"},
        ],
    },
]


def issues(spec: dict[str, Any]) -> list[str]:
    with pytest.raises(SpecError) as caught:
        Environment.from_spec(spec, copy.deepcopy(MINI_SEED))
    return [str(i) for i in caught.value.issues]


@pytest.fixture(scope="module")
def env() -> Environment:
    return Environment.from_spec(spec_with(FRAGMENTS, *TOOLS), copy.deepcopy(MINI_SEED))


def test_fragments_are_reused_by_several_tools(env: Environment) -> None:
    state = env.new_state()
    report = env.call(state, "item_report", {"sku": "A-1"})
    assert report.structured == {"sku": "A-1", "name": "Anvil", "orders": 1, "ordered": 1}
    assert env.call(state, "popular_items").structured["rows"] == [{"sku": "A-1", "name": "Anvil"}]
    assert env.call(state, "find", {"query": "uck"}).structured["rows"] == [{"sku": "B-2"}]
    assert env.call(state, "restock_popular").structured == {"value": 44}
    assert {r["sku"]: r["stock"] for r in state.rows("items")} == {"A-1": 4, "B-2": 0, "C-3": 40}


def test_output_types_follow_the_fragment_to_its_table(env: Environment) -> None:
    schema = env.tool_descriptors["popular_items"].output_schema
    assert schema["properties"]["rows"]["items"]["properties"]["name"] == {"type": ["string", "null"]}


def test_read_sets_follow_the_fragments(env: Environment) -> None:
    tools = env.report.tools
    assert tools["popular_items"].to_dict()["reads"] == {
        "items": ["name", "sku"],
        "orders": ["order_id", "quantity", "sku"],
    }
    assert tools["find"].to_dict()["reads"] == {"items": ["name", "sku"]}
    assert set(tools["restock_popular"].to_dict()["reads"]) == {"items", "orders"}
    assert tools["shadowed"].to_dict()["reads"] == {}


def test_fragments_merge_into_a_with_recursive_clause(env: Environment) -> None:
    result = env.call(env.new_state(), "counted")
    assert result.structured["rows"] == [{"k": 1, "popular": 1}, {"k": 2, "popular": 1}, {"k": 3, "popular": 1}]


def test_a_statements_own_cte_shadows_a_fragment(env: Environment) -> None:
    assert env.call(env.new_state(), "shadowed").structured["rows"] == [{"sku": "X-0"}]


def test_the_expanded_statement_is_what_runs(env: Environment) -> None:
    step = env.executor.tools["popular_items"].steps[0]
    assert step.sql is not None and step.sql.startswith("WITH item_orders AS (\nSELECT i.sku")
    assert step.sql.endswith("SELECT sku, name FROM popular ORDER BY sku")
    assert step.sql.index("item_orders AS") < step.sql.index("popular AS")
    assert env.report.tools["find"].steps[0].fragments == ("matching",)


def test_a_broken_fragment_is_reported_once_where_it_is_declared() -> None:
    broken = copy.deepcopy(FRAGMENTS)
    broken[0]["sql"] = "SELECT sku, name, COUNT(*) AS orders FROM items GROUP BY colour"
    found = issues(spec_with(broken, *TOOLS))
    assert [i for i in found if "colour" in i] == [found[0]]
    assert found[0].startswith("fragments.item_orders.sql: ")
    assert found[1:] == [
        "fragments.popular.sql: uses fragment item_orders, which has errors",
        "tools.item_report.steps[0](return).sql: uses fragment item_orders, which has errors (see "
        "fragments.item_orders)",
        "tools.popular_items.steps[0](return).sql: uses fragment popular, which has errors (see fragments.popular)",
        "tools.counted.steps[0](return).sql: uses fragment popular, which has errors (see fragments.popular)",
        "tools.restock_popular.steps[0](require).sql: uses fragment popular, which has errors (see fragments.popular)",
        "tools.restock_popular.steps[1](exec).sql: uses fragment popular, which has errors (see fragments.popular)",
    ]


def test_a_fragment_parameter_must_be_in_scope_at_each_use() -> None:
    unscoped = read_tool("find_all", "SELECT COUNT(*) FROM matching", "scalar")
    found = issues(spec_with(FRAGMENTS, *TOOLS, unscoped))
    assert found == [
        "tools.find_all.steps[0](return).sql: uses fragment matching, whose :query is neither a declared parameter "
        "nor an earlier let here"
    ]


@pytest.mark.parametrize(
    ("fragments", "expected"),
    [
        (
            [{"name": "items", "sql": "SELECT sku FROM items"}],
            "fragments.items: 'items' is also a table name; give the fragment a name of its own",
        ),
        (
            [{"name": "first", "sql": "SELECT sku FROM second"}, {"name": "second", "sql": "SELECT sku FROM items"}],
            "fragments.first.sql: uses fragment second, which is declared after it; a fragment may use only "
            "fragments declared before it",
        ),
        (
            [{"name": "loop", "sql": "SELECT sku FROM loop"}],
            "fragments.loop.sql: uses itself; a fragment may use only fragments declared before it",
        ),
        (
            [{"name": "twice", "sql": "SELECT sku FROM items"}, {"name": "twice", "sql": "SELECT name FROM items"}],
            "fragments.twice: duplicate fragment name",
        ),
        (
            [{"name": "writes", "sql": "DELETE FROM items"}],
            "fragments.writes.sql: must be a SELECT, found DELETE",
        ),
        (
            [{"name": "draws", "sql": "SELECT new_id('ORD') AS id"}],
            "fragments.draws.sql: new_id() draws an id; call it in a step, not in a fragment",
        ),
    ],
)
def test_bad_fragments_are_refused(fragments: list[dict[str, Any]], expected: str) -> None:
    assert issues(spec_with(fragments)) == [expected]


def test_fragment_names_are_identifiers() -> None:
    found = issues(spec_with([{"name": "Bad-Name", "sql": "SELECT 1"}]))
    assert len(found) == 1 and found[0].startswith("fragments.Bad-Name.name: String should match pattern")


# -- the expansion itself ---------------------------------------------------------------------------

SET = FragmentSet.build([("a", "SELECT 1 AS x;"), ("b", "SELECT x FROM a"), ("c", "SELECT 2 AS y")])


def test_references_skip_own_ctes_and_keep_declaration_order() -> None:
    assert fragment_references("SELECT * FROM c JOIN b USING (x)", ["a", "b", "c"]) == ["b", "c"]
    assert fragment_references("WITH b AS (SELECT 1) SELECT * FROM b, c", ["a", "b", "c"]) == ["c"]
    assert fragment_references("SELECT 'b' AS c FROM items", ["b", "c"]) == []
    assert SET.used_by("SELECT * FROM b") == ["a", "b"]
    assert SET.used_by("SELECT * FROM b, c, a") == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT x FROM b;", "WITH a AS (\nSELECT 1 AS x\n),\nb AS (\nSELECT x FROM a\n)\nSELECT x FROM b"),
        (
            "with t AS (SELECT x FROM b) SELECT * FROM t",
            "with\na AS (\nSELECT 1 AS x\n),\nb AS (\nSELECT x FROM a\n),\nt AS (SELECT x FROM b) SELECT * FROM t",
        ),
        (
            "-- note\nWITH RECURSIVE r(n) AS (SELECT x FROM b UNION ALL SELECT n FROM r WHERE 0) SELECT n FROM r",
            "-- note\nWITH RECURSIVE\na AS (\nSELECT 1 AS x\n),\nb AS (\nSELECT x FROM a\n),\n"
            "r(n) AS (SELECT x FROM b UNION ALL SELECT n FROM r WHERE 0) SELECT n FROM r",
        ),
        (
            "UPDATE items SET stock = 0 WHERE sku IN (SELECT x FROM b)",
            "WITH a AS (\nSELECT 1 AS x\n),\nb AS (\nSELECT x FROM a\n)\n"
            "UPDATE items SET stock = 0 WHERE sku IN (SELECT x FROM b)",
        ),
    ],
)
def test_expansion_prefixes_the_statement_as_written(sql: str, expected: str) -> None:
    assert expand_fragments(sql, SET, SET.used_by(sql)) == expected


def test_a_fragment_may_read_a_list_argument_with_json_each() -> None:
    wanted = {"name": "wanted", "sql": "SELECT value AS sku FROM json_each(:skus)"}
    skus = {"skus": {"type": "array", "items": {"type": "string"}, "description": "SKUs."}}
    pick = read_tool("pick", "SELECT i.sku FROM items i JOIN wanted w ON w.sku = i.sku ORDER BY i.sku", params=skus)
    env = Environment.from_spec(spec_with([wanted], pick), copy.deepcopy(MINI_SEED))
    assert env.call(env.new_state(), "pick", {"skus": ["C-3", "A-1"]}).structured["rows"] == [
        {"sku": "A-1"},
        {"sku": "C-3"},
    ]
