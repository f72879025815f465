// A reviewer at the web console in a real browser (Debian's Chromium
// driven by Playwright): signs in with a one-time link, approves one held
// call and denies another, approves a quarantined tool definition,
// revokes an agent, finds a request by its ID and opens its chain; with
// a screenshot directory, keeps a picture of every page.
// Usage: node console-browser.mjs '{"base":..., "link":..., "approve":ID,
//   "deny":ID, "tool":"upstream/name", "revoke":AGENT, "request":ID, "shots":DIR}'
// Prints {"steps": {...}, "blocked": [...]} or {"error": ...}.
import { chromium } from "playwright-core";

const plan = JSON.parse(process.argv[2]);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const steps = {};
const blocked = [];
try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 900 } });
  page.on("console", (m) => { if (/Content Security Policy|Refused/.test(m.text())) blocked.push(m.text()); });
  const shot = async (name) => { if (plan.shots) await page.screenshot({ path: `${plan.shots}/${name}.png`, fullPage: true }); };
  const flash = async () => (await page.locator(".flash, .error").first().textContent({ timeout: 5000 }))?.trim();

  await page.goto(plan.link);
  await Promise.all([page.waitForURL((u) => u.pathname === "/console/"), page.click('button[type="submit"]')]);
  steps.signedIn = new URL(page.url()).pathname + " " + (await page.locator("form.who span").textContent());
  await shot("overview");

  await page.goto(plan.base + "/approvals");
  await page.locator(`[data-approval="${plan.approve}"]`).waitFor();
  await shot("approvals");
  const a = page.locator(`[data-approval="${plan.approve}"]`);
  await a.locator('input[name="comment"]').fill("checked with the partner");
  await Promise.all([page.waitForNavigation(), a.locator('button[value="approve"]').click()]);
  steps.approved = await flash();
  const d = page.locator(`[data-approval="${plan.deny}"]`);
  await d.locator('input[name="comment"]').fill("not an address we write to");
  await Promise.all([page.waitForNavigation(), d.locator('button[value="deny"]').click()]);
  steps.denied = await flash();

  await page.goto(plan.base + "/tools");
  await shot("tools");
  await page.goto(plan.base + "/tools/" + plan.tool);
  await shot("tool-diff");
  await Promise.all([page.waitForNavigation(), page.locator('button[value="approve"]').click()]);
  steps.tool = await flash();

  await page.goto(plan.base + "/agents");
  await shot("agents");
  const row = page.locator(`#agent-${plan.revoke}`);
  await row.locator('input[name="reason"]').fill("compromised in the exercise");
  await Promise.all([page.waitForNavigation(), row.locator("button").click()]);
  steps.revoked = await flash();

  await page.goto(plan.base + "/audit");
  await page.fill('input[name="request"]', plan.request);
  await Promise.all([page.waitForURL(/request=/), page.click('form.search button[type="submit"]')]);
  await shot("audit");
  await Promise.all([page.waitForURL(/\/audit\/request\//), page.locator(`a[href$="${encodeURIComponent(plan.request)}"]`).first().click()]);
  steps.chain = await page.locator("ol.timeline").textContent();
  await shot("request-chain");

  await page.goto(plan.base + "/alerts");
  await shot("alerts");
  await page.goto(plan.base + "/policy?agent=" + encodeURIComponent(plan.explainAgent) + "&tool=" + encodeURIComponent(plan.explainTool) + "&args=%7B%7D");
  steps.explain = await page.locator("main pre").first().textContent();
  await shot("policy");
  console.log(JSON.stringify({ steps, blocked }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e?.message ?? e), steps, blocked }));
  process.exitCode = 1;
} finally {
  await browser.close();
}
