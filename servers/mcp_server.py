"""One environment as an MCP server: the only module that speaks the ``mcp`` SDK's server API.

Tools, resources (the policy and a readable schema of the state) and server identity come from
the spec. Each call is routed to a state copy by a :class:`StateBinding`: the whole process for
stdio, the state key in the URL or the handshake-era session over HTTP. A failed call is a
``CallToolResult`` with ``isError``; only infrastructure faults (e.g. the state cap) are MCP errors.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from .environment import Environment
from .episodes import Episode
from .errors import StateError
from .executor import ToolResult
from .pool import EpisodePool, StatePool
from .state import StateCopy

__all__ = ["CallRouter", "EpisodeRouter", "HttpRouter", "build_server", "schema_markdown", "call_tool_result", "error_details"]

logger = logging.getLogger(__name__)

RESOURCE_NOT_FOUND = -32002
INVALID_PARAMS = -32602
STATE_UNAVAILABLE = -32000
SESSION_HEADER = "mcp-session-id"


Prompt = tuple[str, str, str]
"""(name, description, text) of an MCP prompt."""


class CallRouter(Protocol):
    """Decides which state a request acts on, runs the call there, and lists the prompts it offers.

    Raises :class:`StateError` when the state cannot be had (cap reached, episode gone).
    """

    def call(self, ctx: ServerRequestContext[Any, Any], tool: str, arguments: Any) -> ToolResult: ...

    def prompts(self, ctx: ServerRequestContext[Any, Any]) -> list[Prompt]: ...


def task_prompts(episode: Episode) -> list[Prompt]:
    if episode.task is None:
        return []
    return [("task", f"The user's request for task {episode.task.id}", episode.task.instruction)]


class EpisodeRouter:
    """Every call goes to one episode: the stdio case (one process, one episode)."""

    def __init__(self, episode: Episode) -> None:
        self.episode = episode

    def call(self, ctx: ServerRequestContext[Any, Any], tool: str, arguments: Any) -> ToolResult:
        return self.episode.call(tool, arguments)

    def prompts(self, ctx: ServerRequestContext[Any, Any]) -> list[Prompt]:
        return task_prompts(self.episode)


class HttpRouter:
    """HTTP: an episode in the path, else a state key in the path, else the handshake-era session,
    else the shared read-only seed state.

    ``…/episodes/<id>/mcp`` acts on that episode (and records the call in its trajectory);
    ``…/s/<key>/mcp`` on the copy for ``<key>``; a handshake-era client on the plain URL on a copy
    for its ``Mcp-Session-Id``; a sessionless (2026-07-28) client on the plain URL on the pristine
    seed state, which nobody can write.
    """

    def __init__(self, env: Environment, pool: StatePool, episodes: EpisodePool) -> None:
        self.env = env
        self.pool = pool
        self.episodes = episodes
        self._shared: StateCopy | None = None

    def _episode(self, ctx: ServerRequestContext[Any, Any]) -> Episode | None:
        request = ctx.request
        episode_id = request.scope.get("path_params", {}).get("episode_id") if request is not None else None
        return self.episodes.find(episode_id, self.env.id) if episode_id is not None else None

    def state_key(self, ctx: ServerRequestContext[Any, Any]) -> str | None:
        request = ctx.request
        if request is None:
            return None
        key = request.scope.get("path_params", {}).get("state_key")
        if key:
            return f"url:{key}"
        session = request.headers.get(SESSION_HEADER)
        return f"session:{session}" if session else None

    def call(self, ctx: ServerRequestContext[Any, Any], tool: str, arguments: Any) -> ToolResult:
        episode = self._episode(ctx)
        if episode is not None:
            return episode.call(tool, arguments)
        key = self.state_key(ctx)
        if key is None:
            if self._shared is None:
                self._shared = self.env.new_state()
            return self.env.executor.call(self._shared, tool, arguments, read_only=True)
        return self.env.executor.call(self.pool.state(self.env, key), tool, arguments)

    def prompts(self, ctx: ServerRequestContext[Any, Any]) -> list[Prompt]:
        episode = self._episode(ctx)
        return task_prompts(episode) if episode is not None else []


def call_tool_result(result: ToolResult) -> types.CallToolResult:
    """The MCP result of a call. A failed call carries no ``structuredContent``: clients validate it
    against the tool's output schema (the TypeScript SDK does whenever it is present), and an error
    shape would hide the message behind a schema failure. Its details travel as a second text block
    holding ``{"error": {...}}`` (see :func:`error_details`)."""
    if result.is_error:
        details = json.dumps(result.structured, ensure_ascii=False, separators=(",", ":"))
        return types.CallToolResult(
            content=[types.TextContent(text=result.text), types.TextContent(text=details)], is_error=True
        )
    return types.CallToolResult(content=[types.TextContent(text=result.text)], structured_content=result.structured)


def error_details(result: types.CallToolResult) -> dict[str, Any] | None:
    """The ``{"error": {...}}`` details of a failed call made through :func:`call_tool_result`, or None."""
    if not result.is_error or len(result.content) < 2:
        return None
    try:
        details = json.loads(getattr(result.content[-1], "text", ""))
    except ValueError:
        return None
    return details if isinstance(details, dict) and "error" in details else None


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


def build_server(env: Environment, router: CallRouter) -> Server[Any]:
    """A low-level MCP server for ``env`` whose calls act on the state ``router`` picks."""
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
            return call_tool_result(router.call(ctx, params.name, params.arguments))
        except StateError as e:
            raise MCPError(STATE_UNAVAILABLE, str(e)) from e

    async def list_prompts(ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None) -> types.ListPromptsResult:
        try:
            prompts = router.prompts(ctx)
        except StateError as e:
            raise MCPError(STATE_UNAVAILABLE, str(e)) from e
        return types.ListPromptsResult(prompts=[types.Prompt(name=name, description=description) for name, description, _ in prompts])

    async def get_prompt(ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams) -> types.GetPromptResult:
        try:
            prompts = {name: (description, text) for name, description, text in router.prompts(ctx)}
        except StateError as e:
            raise MCPError(STATE_UNAVAILABLE, str(e)) from e
        if params.name not in prompts:
            raise MCPError(INVALID_PARAMS, f"Unknown prompt {params.name!r}; prompts here: {', '.join(prompts) or 'none'}")
        description, text = prompts[params.name]
        return types.GetPromptResult(
            description=description,
            messages=[types.PromptMessage(role="user", content=types.TextContent(text=text))],
        )

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
        on_list_prompts=list_prompts,
        on_get_prompt=get_prompt,
    )
