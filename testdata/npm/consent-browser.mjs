// A person at the built-in authorization server's sign-in and consent
// page, in a real browser (Debian's Chromium driven by Playwright): it
// opens the authorization URL, signs in, chooses the agent and allows.
// The browser then goes on to the client's redirect URI (the test's
// listener), as a person's would, under the page's real
// Content-Security-Policy.
// Usage: node consent-browser.mjs AUTH_URL USER PASSWORD AGENT
// Prints {"landed": URL} or {"error": ...}.
import { chromium } from "playwright-core";

const [authUrl, user, password, agent] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  const blocked = [];
  page.on("console", (m) => { if (/Content Security Policy|Refused/.test(m.text())) blocked.push(m.text()); });
  await page.goto(authUrl);
  await page.fill('input[name="user"]', user);
  await page.fill('input[name="password"]', password);
  await page.selectOption('select[name="agent"]', agent);
  await Promise.all([
    page.waitForURL((u) => u.pathname === "/callback", { timeout: 15000 }),
    page.click('button[value="allow"]'),
  ]);
  console.log(JSON.stringify({ landed: page.url(), blocked }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e?.message ?? e) }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
