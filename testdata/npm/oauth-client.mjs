// An MCP client that speaks OAuth, as Claude Code does, using the
// TypeScript SDK's OAuthClientProvider: it connects with no credential,
// follows the gateway's 401 through discovery and dynamic registration to
// the built-in authorization server, plays the person in the browser (the
// sign-in and consent page, driven over HTTP), finishes with the code
// (PKCE), uses the tools, then finds its access token refused (as after
// expiry) and carries on with a refreshed one.
// Usage: node oauth-client.mjs MCP_URL USER PASSWORD AGENT
// Prints one JSON line per step.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { UnauthorizedError } from "@modelcontextprotocol/sdk/client/auth.js";

const [url, user, password, agent] = process.argv.slice(2);
const redirectUrl = "http://127.0.0.1:9/callback"; // nothing listens: the code is read from the redirect
const say = (o) => console.log(JSON.stringify(o));

class Provider {
  constructor() { this.info = undefined; this.toks = undefined; this.verifier = ""; this.authUrl = undefined; this.saved = 0; }
  get redirectUrl() { return redirectUrl; }
  get clientMetadata() {
    return { client_name: "ts-oauth-e2e", redirect_uris: [redirectUrl], grant_types: ["authorization_code", "refresh_token"], response_types: ["code"], token_endpoint_auth_method: "none" };
  }
  clientInformation() { return this.info; }
  saveClientInformation(info) { this.info = info; say({ registered: info.client_id }); }
  tokens() { return this.toks; }
  saveTokens(t) { this.toks = t; this.saved++; say({ tokens: this.saved, refresh: Boolean(t.refresh_token) }); }
  redirectToAuthorization(u) { this.authUrl = u; }
  saveCodeVerifier(v) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
}

// signIn is the person's browser: the authorization URL leads to the
// sign-in page; the form's answer leads (through the server's callback)
// to the client's redirect URI with the code.
async function signIn(authUrl) {
  let res = await fetch(authUrl, { redirect: "manual" });
  let loc = new URL(res.headers.get("location"), authUrl);
  res = await fetch(loc);
  const page = await res.text();
  const field = (n) => page.match(new RegExp(`name="${n}" value="([^"]+)"`))?.[1];
  const form = new URLSearchParams({ id: field("id"), csrf: field("csrf"), user, password, agent, decision: "allow" });
  res = await fetch(new URL("/oauth2/login", loc), { method: "POST", body: form, redirect: "manual" });
  loc = new URL(res.headers.get("location"), loc);
  while (!loc.href.startsWith(redirectUrl)) {
    res = await fetch(loc, { redirect: "manual" });
    loc = new URL(res.headers.get("location"), loc);
  }
  const code = loc.searchParams.get("code");
  if (!code) throw new Error(`no code: ${loc}`);
  return code;
}

const provider = new Provider();
const connect = async () => {
  const client = new Client({ name: "ts-oauth-e2e", version: "1.0.0" });
  const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
  await client.connect(transport);
  return { client, transport };
};

try {
  try {
    await connect();
    say({ error: "connected without authorization" });
    process.exit(1);
  } catch (e) {
    if (!(e instanceof UnauthorizedError) || !provider.authUrl) throw e;
    say({ authorize: provider.authUrl.origin + provider.authUrl.pathname });
    const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
    await transport.finishAuth(await signIn(provider.authUrl));
  }
  let { client } = await connect();
  const tools = await client.listTools();
  say({ tools: tools.tools.map((t) => t.name).sort() });
  await client.close();

  // As after expiry: the access token is refused; the SDK refreshes.
  provider.toks = { ...provider.toks, access_token: provider.toks.access_token.slice(0, -4) + "AAAA" };
  ({ client } = await connect());
  const r = await client.callTool({ name: "demo__search_files", arguments: { query: "threat model" } });
  say({ called: !r.isError, saved: provider.saved });
  await client.close();
} catch (e) {
  say({ error: String(e?.stack ?? e) });
  process.exit(1);
}
