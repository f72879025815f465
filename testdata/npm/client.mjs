// A second, independent MCP client for Portcullis' end-to-end tests, using
// the TypeScript SDK. Usage: node client.mjs URL TOKEN SCRIPT_JSON
// SCRIPT_JSON is a list of steps: {"list": true} or {"call": name, "args": {...}}.
// Prints one JSON line per step: {"tools": [...]} or {"result": ...} or {"error": {...}}.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, script] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "portcullis-e2e-ts", version: "1.0.0" });
try {
  await client.connect(transport);
} catch (e) {
  console.log(JSON.stringify({ connectError: String(e?.message ?? e) }));
  process.exit(0);
}
for (const step of JSON.parse(script)) {
  try {
    if (step.list) {
      const r = await client.listTools();
      console.log(JSON.stringify({ tools: r.tools.map((t) => t.name).sort() }));
    } else {
      const r = await client.callTool({ name: step.call, arguments: step.args ?? {} });
      console.log(JSON.stringify({ result: r }));
    }
  } catch (e) {
    console.log(JSON.stringify({ error: { code: e?.code, message: String(e?.message ?? e), data: e?.data } }));
  }
}
await client.close();
