// A stdio MCP server on the TypeScript SDK with one tool, fetch_url, that
// fetches a URL with Node's built-in fetch (which goes through
// HTTP_PROXY/HTTPS_PROXY when NODE_USE_ENV_PROXY is set): the sandbox's
// egress tests run it. Run with NODE_PATH pointing at the SDK's
// node_modules.
const { McpServer } = require("@modelcontextprotocol/sdk/server/mcp.js");
const { StdioServerTransport } = require("@modelcontextprotocol/sdk/server/stdio.js");
const { z } = require("zod");

const server = new McpServer({ name: "fetch-test", version: "1.0.0" });
server.registerTool(
  "fetch_url",
  { description: "Fetch a URL and return its body", inputSchema: { url: z.string() }, annotations: { readOnlyHint: true } },
  async ({ url }) => {
    try {
      const r = await fetch(url, { signal: AbortSignal.timeout(5000) });
      const body = await r.text();
      return { content: [{ type: "text", text: `${r.status} ${body}` }], isError: !r.ok };
    } catch (e) {
      return { content: [{ type: "text", text: `failed: ${e.cause ? e.cause.message : e.message}` }], isError: true };
    }
  },
);
server.connect(new StdioServerTransport());
