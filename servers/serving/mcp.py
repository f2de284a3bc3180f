"""One environment as an MCP server: where tool calls meet the ``mcp`` SDK's server API.

With :mod:`servers.serving.sdk` (the SDK's transports) this is the only runtime module that
imports the SDK (``tests/test_sdk_boundary.py``); the rest of the runtime sees :data:`McpServer`,
:func:`build_server` and the call routing below, not the SDK.

Tools, resources (the policy and a readable schema of the state) and server identity come from
the spec. Each call is routed to a state copy by a :class:`CallRouter`: the whole process for
stdio, the state key in the URL or the handshake-era session over HTTP. A failed call is a
``CallToolResult`` with ``isError``; only infrastructure faults (e.g. the state cap) are MCP errors.

Calls run in worker threads (:class:`CallRunner`), never on the event loop, so one slow call
cannot delay ``/healthz`` or any other session; calls on one state copy run one at a time.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.to_thread
import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.server.context import CallNext, HandlerResult
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from ..episodes.environment import Environment
from ..episodes.episode import Episode
from ..episodes.pool import EpisodePool, StatePool
from ..errors import StateError
from ..state.executor import CallPreempted, ToolResult, preemptible
from ..state.store import StateCopy

__all__ = [
    "CallRouter",
    "CallRunner",
    "CallTarget",
    "EpisodeRouter",
    "HttpRouter",
    "McpServer",
    "build_server",
    "schema_markdown",
    "call_tool_result",
    "error_details",
    "session_state_key",
    "DEFAULT_CALL_THREADS",
    "INLINE_BUDGET",
]

logger = logging.getLogger(__name__)

RESOURCE_NOT_FOUND = -32002
INVALID_PARAMS = -32602
STATE_UNAVAILABLE = -32000
SESSION_HEADER = "mcp-session-id"
DEFAULT_CALL_THREADS = 32
"""Worker threads that run tool calls at once, across every environment of a gateway."""
INLINE_BUDGET = (20_000, 2.0)
"""(SQLite steps, milliseconds) a call may take on the event loop before it moves to a worker thread."""


Prompt = tuple[str, str, str]
"""(name, description, text) of an MCP prompt."""

McpServer = Server[Any]
"""The SDK's low-level server, as :func:`build_server` makes it: served by a session manager or over stdio
(:mod:`.sdk`)."""


@dataclass(frozen=True)
class CallTarget:
    """Where one tool call runs. ``run(tool, arguments)`` executes it in a worker thread; calls
    with the same ``owner`` (a state copy, an episode) run one at a time, in arrival order, and
    wait for their turn on the event loop rather than in a thread. ``owner=None``: calls need no
    ordering (each one borrows a copy of its own)."""

    run: Callable[[str, Any], ToolResult]
    owner: object | None


class CallRouter(Protocol):
    """Decides which state a request acts on and lists the prompts it offers. Both run on the
    event loop and must be quick; the call itself runs later, in a worker thread.

    Raises :class:`StateError` when the state cannot be had (cap reached, episode gone).
    """

    def target(self, ctx: ServerRequestContext[Any, Any]) -> CallTarget: ...

    def prompts(self, ctx: ServerRequestContext[Any, Any]) -> list[Prompt]: ...


class CallRunner:
    """Runs tool calls in worker threads, at most ``threads`` at once, one at a time per owner.

    A runaway call holds one thread (until the executor's deadline stops it), never the event
    loop; a call queued behind another on the same state waits on the loop, holding no thread.
    One runner serves every environment of a gateway, so ``threads`` bounds the fleet's call
    concurrency (and the SQLite connections busy at once).
    """

    def __init__(self, threads: int = DEFAULT_CALL_THREADS) -> None:
        if threads < 1:
            raise ValueError("a call runner needs at least one thread")
        self.limiter = anyio.CapacityLimiter(threads)
        self._turns: dict[int, tuple[anyio.Lock, int]] = {}  # owner id -> (its lock, calls holding or awaiting it)

    @contextlib.asynccontextmanager
    async def turn(self, owner: object | None) -> AsyncIterator[None]:
        """Wait (on the event loop) until no call runs on ``owner``, and hold it: closing a state
        copy while a worker thread runs a statement on it would pull the connection from under it."""
        if owner is None:
            yield
            return
        key = id(owner)  # the caller holds ``owner`` for the whole turn, so the id is not reused meanwhile
        lock, users = self._turns.get(key) or (anyio.Lock(), 0)
        self._turns[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._turns[key]
            if users == 1:
                del self._turns[key]
            else:
                self._turns[key] = (lock, users - 1)

    async def run(self, target: CallTarget, tool: str, arguments: Any) -> ToolResult:
        """Run the call once it is ``target.owner``'s turn: first on the event loop under a small
        budget (:data:`INLINE_BUDGET`; most calls fit it, and a thread hand-off costs more than they
        do), else — rolled back untouched — again in a worker thread. The thread is never abandoned:
        a cancelled request still waits for its call to finish, so the next call on that state
        cannot start beside it."""
        async with self.turn(target.owner):
            try:
                with preemptible(*INLINE_BUDGET):
                    return target.run(tool, arguments)
            except CallPreempted:
                pass
            return await anyio.to_thread.run_sync(target.run, tool, arguments, limiter=self.limiter)

    def busy(self) -> int:
        """Worker threads running a call now."""
        return int(self.limiter.borrowed_tokens)


def task_prompts(episode: Episode) -> list[Prompt]:
    if episode.task is None:
        return []
    return [("task", f"The user's request for task {episode.task.id}", episode.task.instruction)]


class EpisodeRouter:
    """Every call goes to one episode: the stdio case (one process, one episode)."""

    def __init__(self, episode: Episode) -> None:
        self.episode = episode

    def target(self, ctx: ServerRequestContext[Any, Any]) -> CallTarget:
        return CallTarget(self.episode.call, self.episode)

    def prompts(self, ctx: ServerRequestContext[Any, Any]) -> list[Prompt]:
        return task_prompts(self.episode)


def session_state_key(session_id: str) -> str:
    """The pool key of the state a handshake-era MCP session owns."""
    return f"session:{session_id}"


class _SharedCopies:
    """Pristine copies of the seed state for sessionless reads on the plain URL, lent one per call.

    Calls there are read-only (write tools are refused, a read that changes anything is rolled
    back), so every copy stays equal to the seed and reads need not queue behind one another:
    a runaway read holds its own copy, not everyone's. At most one copy per concurrent call exists.
    """

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._free: list[StateCopy] = []
        self._lock = threading.Lock()

    def call(self, tool: str, arguments: Any) -> ToolResult:
        with self._lock:
            state = self._free.pop() if self._free else None
        if state is None:
            state = self.env.new_state()
        try:
            return self.env.call(state, tool, arguments, read_only=True)
        finally:
            if state.conn.in_transaction:  # never lend out a copy a failure left mid-transaction
                state.close()
            else:
                with self._lock:
                    self._free.append(state)


def _client_host(ctx: ServerRequestContext[Any, Any]) -> str | None:
    request = ctx.request
    client = getattr(request, "client", None)
    return client.host if client is not None else None


class HttpRouter:
    """HTTP: an episode in the path, else a state key in the path, else the handshake-era session,
    else the shared read-only seed state.

    ``…/episodes/<id>/mcp`` acts on that episode (and records the call in its trajectory);
    ``…/s/<key>/mcp`` on the copy for ``<key>``; a handshake-era client on the plain URL on a copy
    for its MCP session; a sessionless (2026-07-28) client on the plain URL on the pristine seed
    state, which nobody can write.

    A session counts only if the server issued it: the request came through a handshake-era
    connection (whose transport the SDK picked by that id and checked it against) and ``issued``
    confirms the session manager still holds the id. An ``Mcp-Session-Id`` header on a
    sessionless request is ignored, so an invented or borrowed id neither creates state nor
    reaches another session's.
    """

    def __init__(
        self, env: Environment, pool: StatePool, episodes: EpisodePool, issued: Callable[[str], bool] | None = None
    ) -> None:
        self.env = env
        self.pool = pool
        self.episodes = episodes
        self.issued: Callable[[str], bool] = issued or (lambda session_id: False)
        """Whether the session manager serving this router issued and still holds a session id;
        the gateway sets it once the manager exists (nothing counts as issued until then)."""
        self._shared = _SharedCopies(env)

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
        if session and ctx.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS and self.issued(session):
            return session_state_key(session)
        return None

    def target(self, ctx: ServerRequestContext[Any, Any]) -> CallTarget:
        episode = self._episode(ctx)
        if episode is not None:
            return CallTarget(episode.call, episode)
        key = self.state_key(ctx)
        if key is None:
            return CallTarget(self._shared.call, None)
        state = self.pool.state(self.env, key, client=_client_host(ctx))
        return CallTarget(functools.partial(self.env.call, state), state)

    def prompts(self, ctx: ServerRequestContext[Any, Any]) -> list[Prompt]:
        episode = self._episode(ctx)
        return task_prompts(episode) if episode is not None else []


_UNSET: Any = object()
_RAW_ARGUMENTS: contextvars.ContextVar[Any] = contextvars.ContextVar("envfleet_raw_arguments", default=_UNSET)


async def _non_object_arguments(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
    """Server middleware: ``tools/call`` whose ``arguments`` is not an object (a list, a string, a
    number) reaches the tool handler, which answers with the documented tool error, instead of
    failing the SDK's params validation with JSON-RPC -32602. The value travels beside the request
    (``arguments`` itself is emptied so validation passes)."""
    params = ctx.params
    if ctx.method != "tools/call" or not isinstance(params, Mapping):
        return await call_next(ctx)
    arguments = params.get("arguments")
    if arguments is None or isinstance(arguments, dict):
        return await call_next(ctx)
    token = _RAW_ARGUMENTS.set(arguments)
    try:
        return await call_next(dataclasses.replace(ctx, params={**params, "arguments": None}))
    finally:
        _RAW_ARGUMENTS.reset(token)


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
    tool = env.tool_descriptors[name]
    return types.Tool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        annotations=types.ToolAnnotations(
            read_only_hint=tool.read_only,
            destructive_hint=tool.destructive,
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


def build_server(env: Environment, router: CallRouter, runner: CallRunner | None = None) -> McpServer:
    """A low-level MCP server for ``env`` whose calls act on the state ``router`` picks, in the
    worker threads of ``runner`` (a runner of its own by default)."""
    runner = runner or CallRunner()
    spec = env.spec
    tools = types.ListToolsResult(tools=[_tool(env, name) for name in env.tool_names])
    input_schemas = {name: tool.input_schema for name, tool in env.tool_descriptors.items()}
    policy_uri = f"envfleet://{spec.id}/policy"
    schema_uri = f"envfleet://{spec.id}/schema"
    resources = {
        policy_uri: (
            types.Resource(
                name="policy",
                title=f"{spec.name} policy",
                uri=policy_uri,
                mime_type="text/markdown",
                description="The rules an agent must follow in this environment.",
            ),
            lambda: spec.policy,
        ),
        schema_uri: (
            types.Resource(
                name="schema",
                title=f"{spec.name} data model",
                uri=schema_uri,
                mime_type="text/markdown",
                description="Tables and columns of the state.",
            ),
            lambda: schema_markdown(env),
        ),
    }

    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return tools

    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        arguments = _RAW_ARGUMENTS.get()
        if arguments is _UNSET:
            arguments = params.arguments
        try:
            target = router.target(ctx)
            return call_tool_result(await runner.run(target, params.name, arguments))
        except StateError as e:
            raise MCPError(STATE_UNAVAILABLE, str(e)) from e

    async def list_prompts(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListPromptsResult:
        try:
            prompts = router.prompts(ctx)
        except StateError as e:
            raise MCPError(STATE_UNAVAILABLE, str(e)) from e
        return types.ListPromptsResult(
            prompts=[types.Prompt(name=name, description=description) for name, description, _ in prompts]
        )

    async def get_prompt(
        ctx: ServerRequestContext[Any, Any], params: types.GetPromptRequestParams
    ) -> types.GetPromptResult:
        try:
            prompts = {name: (description, text) for name, description, text in router.prompts(ctx)}
        except StateError as e:
            raise MCPError(STATE_UNAVAILABLE, str(e)) from e
        if params.name not in prompts:
            raise MCPError(
                INVALID_PARAMS, f"Unknown prompt {params.name!r}; prompts here: {', '.join(prompts) or 'none'}"
            )
        description, text = prompts[params.name]
        return types.GetPromptResult(
            description=description,
            messages=[types.PromptMessage(role="user", content=types.TextContent(text=text))],
        )

    async def list_resources(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[resource for resource, _ in resources.values()])

    async def read_resource(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        entry = resources.get(str(params.uri))
        if entry is None:
            raise MCPError(RESOURCE_NOT_FOUND, f"Unknown resource {params.uri}; resources are: {', '.join(resources)}")
        resource, read = entry
        return types.ReadResourceResult(
            contents=[types.TextResourceContents(uri=resource.uri, mime_type=resource.mime_type, text=read())]
        )

    server: McpServer = Server(
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
    server.middleware.append(_non_object_arguments)
    return server
