"""Stage 5, the tool dependency graph: which tool's output or effect another tool needs.

Edge A → B when an output field of A can feed a parameter of B (same name: ``patient_id`` out of
``search_patients`` into ``create_appointment``), or when A writes a table that a ``require`` step
of B reads (A can change whether B's rule passes). Task chains are walks on this graph. The
graph is saved as ``tool_graph.json`` in the environment folder.
"""

from __future__ import annotations

from typing import Any

import networkx as nx

from servers import Environment

__all__ = ["build_graph", "graph_json", "output_fields"]


def output_fields(schema: dict[str, Any]) -> set[str]:
    """Field names a tool returns: a row's properties, or the properties of each item of ``rows``."""
    properties = schema.get("properties", {})
    if "rows" in properties:
        return set(properties["rows"].get("items", {}).get("properties", {}))
    return set(properties)


def build_graph(env: Environment) -> nx.DiGraph:
    graph = nx.DiGraph()
    tools = env.tools
    for name, compiled in tools.items():
        graph.add_node(name, kind=compiled.tool.kind)
    outputs = {n: output_fields(t.output_schema) for n, t in tools.items()}
    inputs = {n: set(t.input_schema.get("properties", {})) for n, t in tools.items()}
    required = {n: set(t.input_schema.get("required", [])) for n, t in tools.items()}
    rule_reads = {
        n: {table for step in t.analysis.steps if step.kind == "require" and step.info for table in step.info.reads}
        for n, t in tools.items()
    }
    writes = {n: set(t.analysis.writes) for n, t in tools.items()}
    for a in tools:
        for b in tools:
            if a == b:
                continue
            via = [f"field:{f}" for f in sorted(outputs[a] & inputs[b]) if f in required[b] or f.endswith("_id")]
            via += [f"state:{t}" for t in sorted(writes[a] & rule_reads[b])]
            if via:
                graph.add_edge(a, b, via=via)
    return graph


def graph_json(graph: nx.DiGraph) -> dict[str, Any]:
    return {
        "nodes": [{"name": n, "kind": graph.nodes[n]["kind"]} for n in sorted(graph.nodes)],
        "edges": [{"from": a, "to": b, "via": graph.edges[a, b]["via"]} for a, b in sorted(graph.edges)],
    }
