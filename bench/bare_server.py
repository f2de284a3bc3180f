"""Baseline for bench/http_calls.py: a bare low-level `mcp` server doing one SQLite point read.

No validation, no state keys, no rules: the least an MCP tool over SQLite can cost. Usage:
    python bench/bare_server.py SEED_JSON PORT
"""

from __future__ import annotations

import json
import sqlite3
import sys
from typing import Any

import mcp_types as types
import uvicorn
from mcp.server import Server


def main(seed_path: str, port: int) -> None:
    members = json.load(open(seed_path))["members"]
    columns = list(members[0])
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute(f"CREATE TABLE members ({', '.join(columns)}, PRIMARY KEY (member_id))")
    db.executemany(
        f"INSERT INTO members VALUES ({', '.join('?' * len(columns))})", [tuple(m[c] for c in columns) for m in members]
    )
    schema = {
        "type": "object",
        "properties": {"member_id": {"type": "string", "description": "Card number."}},
        "required": ["member_id"],
    }
    tools = types.ListToolsResult(tools=[types.Tool(name="get_member", description="A member.", input_schema=schema)])

    async def list_tools(ctx: Any, params: Any) -> types.ListToolsResult:
        return tools

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        cursor = db.execute("SELECT * FROM members WHERE member_id = ?", ((params.arguments or {}).get("member_id"),))
        row = cursor.fetchone()
        data = dict(zip([d[0] for d in cursor.description], row, strict=True)) if row else {}
        return types.CallToolResult(content=[types.TextContent(text=json.dumps(data))], structured_content=data)

    server = Server(
        "bare", version="1", on_list_tools=list_tools, on_call_tool=call_tool, get_tool_input_schema=lambda name: schema
    )
    app = server.streamable_http_app(json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
