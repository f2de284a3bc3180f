// An MCP client built on the official TypeScript SDK (@modelcontextprotocol/sdk 1.x), as a TypeScript agent uses it:
// connect, list the tools (which makes the SDK validate later structuredContent against each tool's outputSchema),
// then make the planned calls in order. Prints one JSON object on stdout; driven by test_typescript_clients.py.
//
// Usage: node client.mjs '<plan>'   with plan = {"url": "http://…/mcp"} or {"command": "…", "args": [...]},
//                                    plus "calls": [{"name": "…", "arguments": {…}}, …]
// A call the SDK throws on (e.g. "MCP error -32602: Structured content does not match the tool's output schema")
// is reported as {"thrown": {"code", "message"}} rather than aborting, so the test sees exactly what an agent would.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const plan = JSON.parse(process.argv[2] ?? "{}");
const transport = plan.url
  ? new StreamableHTTPClientTransport(new URL(plan.url))
  : new StdioClientTransport({ command: plan.command, args: plan.args ?? [], stderr: "inherit" });
const client = new Client({ name: "envfleet-interop", version: "1.0.0" });

await client.connect(transport);
const listed = await client.listTools();
const calls = [];
for (const call of plan.calls ?? []) {
  try {
    calls.push({ ...call, result: await client.callTool({ name: call.name, arguments: call.arguments ?? {} }) });
  } catch (error) {
    calls.push({ ...call, thrown: { code: error?.code ?? null, message: String(error?.message ?? error) } });
  }
}
process.stdout.write(
  JSON.stringify({
    server: client.getServerVersion() ?? null,
    protocolVersion: transport.protocolVersion ?? null,
    tools: listed.tools.map((tool) => ({ name: tool.name, hasOutputSchema: Boolean(tool.outputSchema) })),
    calls,
  }) + "\n",
);
await client.close();
