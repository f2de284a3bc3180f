"""One environment as an MCP server: the only module that speaks the ``mcp`` SDK's server API.

Tools, resources (the policy and a readable schema of the state) and server identity come from
the spec. Each call is routed to a state copy by a :class:`StateBinding`: the whole process for
stdio, the state key in the URL or the handshake-era session over HTTP. A failed call is a
``CallToolResult`` with ``isError``; only infrastructure faults (e.g. the state cap) are MCP errors.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from .environment import Environment
from .errors import StateError
from .executor import ToolResult
from .state import StateCopy
from .state_pool import StatePool

__all__ = ["StateBinding", "FixedState", "KeyedStates", "build_server", "schema_markdown", "call_tool_result"]

logger = logging.getLogger(__name__)

RESOURCE_NOT_FOUND = -32002
STATE_UNAVAILABLE = -32000
SESSION_HEADER = "mcp-session-id"


class StateBinding(Protocol):
    """Finds the state a request acts on. Returns the state and whether it is shared (read-only)."""

    def resolve(self, ctx: ServerRequestContext[Any, Any]) -> tuple[StateCopy, bool]: ...


class FixedState:
    """One state for the whole connection: the stdio case."""

    def __init__(self, state: StateCopy) -> None:
        self.state = state

    def resolve(self, ctx: ServerRequestContext[Any, Any]) -> tuple[StateCopy, bool]:
        return self.state, False


class KeyedStates:
    """HTTP: the URL's state key, else the handshake-era session id, else the shared read-only state.

    A request on ``…/s/<key>/mcp`` gets the copy for ``<key>``; a handshake-era client on the plain
    URL gets a copy for its ``Mcp-Session-Id``; a sessionless (2026-07-28) client on the plain URL
    reads the pristine seed state, which nobody can write.
    """

    def __init__(self, env: Environment, pool: StatePool) -> None:
        self.env = env
        self.pool = pool
        self._shared: StateCopy | None = None

    def key_for(self, ctx: ServerRequestContext[Any, Any]) -> str | None:
        request = ctx.request
        if request is None:
            return None
        key = request.scope.get("path_params", {}).get("state_key")
        if key:
            return f"url:{key}"
        session = request.headers.get(SESSION_HEADER)
        return f"session:{session}" if session else None

    def resolve(self, ctx: ServerRequestContext[Any, Any]) -> tuple[StateCopy, bool]:
        key = self.key_for(ctx)
        if key is None:
            if self._shared is None:
                self._shared = self.env.new_state()
            return self._shared, True
        return self.pool.get(self.env, key), False


def call_tool_result(result: ToolResult) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=result.text)],
        structured_content=result.structured,
        is_error=result.is_error,
    )


def _tool(env: Environment, name: str) -> types.Tool:
    compiled = env.executor.tools[name]
    tool = compiled.tool
    return types.Tool(
        name=tool.name,
        description=tool.description,
        input_schema=compiled.input_schema,
        output_schema=compiled.output_schema,
        annotations=types.ToolAnnotations(
            read_only_hint=tool.kind == "read",
            destructive_hint=tool.kind == "write" and "delete" in compiled.analysis.statement_kinds(),
            open_world_hint=False,
        ),
    )


def schema_markdown(env: Environment) -> str:
    """A human-readable description of the state's tables."""
    lines = [f"# {env.spec.name}: data model", ""]
    for table in env.spec.tables:
        lines += [f"## {table.name}", ""]
        if table.description:
            lines += [table.description, ""]
        lines += ["| column | type | notes | description |", "| --- | --- | --- | --- |"]
        for column in table.columns:
            notes = []
            if column.primary_key:
                notes.append("primary key")
            if not column.nullable and not column.primary_key:
                notes.append("required")
            if column.unique:
                notes.append("unique")
            if column.references:
                notes.append(f"→ {column.references}")
            if column.enum:
                notes.append("one of " + ", ".join(str(v) for v in column.enum))
            if column.default is not None:
                notes.append(f"default {column.default!r}")
            lines.append(f"| {column.name} | {column.type} | {'; '.join(notes)} | {column.description} |")
        for check in table.checks:
            lines.append(f"\nRule `{check.name}`: {check.message}")
        lines.append("")
    return "\n".join(lines)


def build_server(env: Environment, binding: StateBinding) -> Server[Any]:
    """A low-level MCP server for ``env`` whose calls act on the state ``binding`` picks."""
    spec = env.spec
    tools = types.ListToolsResult(tools=[_tool(env, name) for name in env.tool_names])
    input_schemas = {name: compiled.input_schema for name, compiled in env.executor.tools.items()}
    policy_uri = f"envfleet://{spec.id}/policy"
    schema_uri = f"envfleet://{spec.id}/schema"
    resources = {
        policy_uri: (types.Resource(name="policy", title=f"{spec.name} policy", uri=policy_uri, mime_type="text/markdown",
                                    description="The rules an agent must follow in this environment."),
                     lambda: spec.policy),
        schema_uri: (types.Resource(name="schema", title=f"{spec.name} data model", uri=schema_uri,
                                    mime_type="text/markdown", description="Tables and columns of the state."),
                     lambda: schema_markdown(env)),
    }

    async def list_tools(ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return tools

    async def call_tool(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            state, shared = binding.resolve(ctx)
        except StateError as e:
            raise MCPError(STATE_UNAVAILABLE, str(e)) from e
        return call_tool_result(env.executor.call(state, params.name, params.arguments, read_only=shared))

    async def list_resources(ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[resource for resource, _ in resources.values()])

    async def read_resource(ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams) -> types.ReadResourceResult:
        entry = resources.get(str(params.uri))
        if entry is None:
            raise MCPError(RESOURCE_NOT_FOUND, f"Unknown resource {params.uri}; resources are: {', '.join(resources)}")
        resource, read = entry
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=resource.uri, mime_type=resource.mime_type, text=read())]
        )

    return Server(
        f"envfleet-{spec.id}",
        version=spec.version,
        title=spec.name,
        description=spec.description,
        instructions=spec.policy,
        get_tool_input_schema=input_schemas.get,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        on_list_resources=list_resources,
        on_read_resource=read_resource,
    )
