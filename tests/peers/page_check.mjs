// page_check.mjs: drives the Connected Apps page (GET /) in a real browser,
// Debian's Chromium through playwright-core, as a person would, and prints
// one JSON line saying what it saw. tests/integration/page_spec.lua runs it
// against a ferry it has prepared, and asserts on that line.
//
// What it does, in one browser launch:
//   1. the sign-in form shows; the admin's key opens the page: the
//      user · team · role line, the Connected and Available sections, and
//      what Needs attention (FERRY_DUE: a connection past its rotation);
//   2. connects FERRY_CONNECT through its card's form (credential fields,
//      settings and label, found by their labels), sees it under Connected
//      with the account label the provider's check gave, and reads the
//      connection back from the API (label, settings, scope);
//   3. a screenshot; disconnecting it (the confirm dialog: cancel first,
//      then accept) puts it back under Available;
//   4. "Use another key" with the member's key: their view (no team
//      sharing; FERRY_MEMBER_DISCONNECT: a team connection they may not
//      delete, whose refusal the page must show);
//   5. a wrong key shows the sign-in form again with an error.
// Throughout it records console errors, page errors, failed requests,
// HTTP errors, requests leaving ferry's origin and CSP violations (a
// securitypolicyviolation listener added by addInitScript). HTTP errors a
// step provokes on purpose (the wrong key's 401s, the member's 403) are
// expected only during that step. A deliberate inline <style> at the end
// checks the CSP listener works. Anything unexpected fails the run.
//
// Environment:
//   FERRY_URL            ferry's base URL (required)
//   FERRY_KEY            an admin's API key (required)
//   FERRY_MEMBER_KEY     a member's API key of the same team (step 4 skipped without)
//   FERRY_CONNECT        JSON {name, slug, fields: {label text: value}, label, account_label}
//                        (default: the test provider keyed_header)
//   FERRY_DUE            name of an integration that must show as due for rotation
//   FERRY_MEMBER_DISCONNECT  name of a team connection's integration the member sees
//                        but may not disconnect
//   FERRY_PAGE_DIR       where screenshots go and Chromium keeps its files
//                        (default: a new folder under $TMPDIR)
//   CHROMIUM             the browser (default /usr/bin/chromium)
//   FERRY_PAGE_DEADLINE_MS  the whole run's deadline (default 50000)
// Exit status 0 when every check passed; the JSON line has "ok".
import { chromium } from "playwright-core";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const started = Date.now();
const env = process.env;
const need = (name) => {
  if (!env[name]) { console.error(`page_check: ${name} is not set`); process.exit(2); }
  return env[name];
};
const BASE = need("FERRY_URL").replace(/\/+$/, "");
const ADMIN_KEY = need("FERRY_KEY");
const MEMBER_KEY = env.FERRY_MEMBER_KEY || "";
const CONNECT = Object.assign({
  name: "Keyed (header)", slug: "keyed_header",
  fields: { token: "page-check-token-5e1f", workspace: "ws-page" },
  label: "Page check", account_label: "echo account",
}, env.FERRY_CONNECT ? JSON.parse(env.FERRY_CONNECT) : {});
const DUE = env.FERRY_DUE || "";
const MEMBER_DISCONNECT = env.FERRY_MEMBER_DISCONNECT || "";
// Well formed (fry_<16 hex>_<43 base64url>), but no such key.
const WRONG_KEY = "fry_0123456789abcdef_" + "x".repeat(43);
const DIR = env.FERRY_PAGE_DIR || mkdtempSync(join(tmpdir(), "ferry-page-"));
const DEADLINE_MS = Number(env.FERRY_PAGE_DEADLINE_MS || 50000);
const WAIT_MS = 10000;   // any one element to show up

const out = { ok: false, url: BASE, dir: DIR, screenshots: [], steps: [] };
const problems = [];        // anything unexpected: fails the run
const expectedErrors = [];  // errors a step provoked on purpose
let allowed = [];           // [{status, path}] while a step expects them
let step = "start";

const origin = new URL(BASE).origin;
const pathOf = (u) => { try { return new URL(u).pathname; } catch { return u; } };
const isAllowed = (status, url) => allowed.some((a) => a.status === status && pathOf(url).startsWith(a.path));

let browser;
const watchdog = setTimeout(() => finish(new Error(`deadline of ${DEADLINE_MS} ms passed`)), DEADLINE_MS);

async function finish(err) {
  clearTimeout(watchdog);
  out.ms = Date.now() - started;
  out.problems = problems;
  out.expected_errors = expectedErrors;
  if (err) out.error = `${step}: ${err.message.split("\n")[0]}`;
  out.ok = !err && problems.length === 0;
  try {
    if (browser) await Promise.race([browser.close(), new Promise((r) => setTimeout(r, 5000))]);
  } catch { /* already gone */ }
  process.stdout.write(JSON.stringify(out) + "\n");
  if (err) console.error(err.stack || String(err));
  process.exit(out.ok ? 0 : 1);
}

function begin(name, allow = []) {
  step = name;
  allowed = allow;
  out.steps.push({ name, at_ms: Date.now() - started });
  console.error(`page_check: ${name} (${Date.now() - started} ms)`);
}

function check(cond, what) { if (!cond) throw new Error("check failed: " + what); }
const squash = (s) => (s || "").replace(/\s+/g, " ").trim();
async function until(cond, what, ms = WAIT_MS) {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error("timed out waiting for " + what);
    await new Promise((r) => setTimeout(r, 25));
  }
}

// The admin's connections of one integration, as the API lists them.
async function apiConnections(slug) {
  const res = await fetch(BASE + "/v1/connections", { headers: { Authorization: "Bearer " + ADMIN_KEY } });
  check(res.ok, "GET /v1/connections answered " + res.status);
  return (await res.json()).connections.filter((c) => c.integration === slug);
}

async function main() {
  for (const d of ["config", "cache", "tmp", "home"]) mkdirSync(join(DIR, d), { recursive: true });
  begin("launch");
  browser = await chromium.launch({
    executablePath: env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: 30000,
    // Chromium's own files stay in the test folder.
    env: Object.assign({}, process.env, {
      XDG_CONFIG_HOME: join(DIR, "config"), XDG_CACHE_HOME: join(DIR, "cache"),
      TMPDIR: join(DIR, "tmp"), HOME: join(DIR, "home"),
    }),
  });
  const context = await browser.newContext({
    viewport: { width: 1280, height: 900 }, locale: "en-US", timezoneId: "UTC",
  });
  context.setDefaultTimeout(WAIT_MS);
  await context.exposeBinding("__ferryCspViolation", (_source, v) => {
    (step === "csp canary" ? expectedErrors : problems).push(Object.assign({ kind: "csp", step }, v));
  });
  await context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__ferryCspViolation({
        directive: e.effectiveDirective, blocked: e.blockedURI, source: e.sourceFile,
        line: e.lineNumber, sample: e.sample,
      });
    }, true);
  });

  const page = await context.newPage();
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const url = msg.location().url || "";
    const m = /status of (\d+)/.exec(msg.text());
    const rec = { kind: "console", step, text: msg.text(), url };
    const canary = step === "csp canary" && /Content Security Policy/.test(msg.text());
    (canary || (m && isAllowed(Number(m[1]), url)) ? expectedErrors : problems).push(rec);
  });
  page.on("pageerror", (err) => problems.push({ kind: "pageerror", step, text: String(err) }));
  page.on("requestfailed", (req) =>
    problems.push({ kind: "requestfailed", step, url: req.url(), error: req.failure() && req.failure().errorText }));
  page.on("request", (req) => {
    const u = req.url();
    let o = null;
    try { o = new URL(u).origin; } catch { /* not a URL: counted below */ }
    if (!u.startsWith("data:") && o !== origin) problems.push({ kind: "offsite", step, url: u });
  });
  page.on("response", (res) => {
    if (res.status() < 400) return;
    const rec = { kind: "http", step, status: res.status(), url: res.url() };
    (isAllowed(res.status(), res.url()) ? expectedErrors : problems).push(rec);
  });
  // A dialog nobody expects is dismissed and counted; steps that expect one
  // answer it themselves.
  let onDialog = null;
  page.on("dialog", async (d) => {
    if (onDialog) return onDialog(d);
    problems.push({ kind: "dialog", step, text: d.message() });
    await d.dismiss();
  });

  const $ = (sel) => page.locator(sel);
  const text = async (sel) => ((await $(sel).textContent()) || "").trim();
  const card = (section, name) =>
    $(`#${section} .card`).filter({ has: page.getByRole("heading", { name, exact: true }) });
  const names = (section) => $(`#${section} .card h3`).allTextContents();
  const message = async () => ({
    text: await text("#message"),
    error: await $("#message").evaluate((m) => m.classList.contains("error")),
  });

  async function signIn(key) {
    await $("#signin").waitFor({ state: "visible" });
    await page.getByLabel("ferry API key").fill(key);
    await page.getByRole("button", { name: "Open", exact: true }).click();
  }
  // Signed in: the who line and at least one card are there.
  async function signedIn() {
    await page.waitForFunction(() => document.querySelector("#who").textContent.trim() !== "");
    await $("#available .card, #connected .card").first().waitFor();
    check(await $("#signin").isHidden(), "the sign-in form is hidden once signed in");
  }
  const attention = async () =>
    (await $("#attention").isVisible()) ? (await $("#attention-list li").allTextContents()).map((s) => s.trim()) : [];
  const noOverflow = () =>
    page.evaluate(() => document.documentElement.scrollWidth <= document.documentElement.clientWidth);

  // 1. sign in as the admin
  begin("open page");
  const resp = await page.goto(BASE + "/", { waitUntil: "domcontentloaded", timeout: 30000 });
  out.page_status = resp.status();
  out.csp_header = resp.headers()["content-security-policy"] || null;
  await $("#signin").waitFor({ state: "visible" });
  out.signin = {
    shown: true,
    title: await page.title(),
    who_empty: (await text("#who")) === "",
    signout_hidden: await $("#signout").isHidden(),
    attention_hidden: await $("#attention").isHidden(),
    cards: await $(".card").count(),
  };

  begin("sign in as admin");
  await signIn(ADMIN_KEY);
  await signedIn();
  if (DUE) await card("connected", DUE).waitFor();
  const admin = out.admin = {
    who: await text("#who"),
    signout_visible: await $("#signout").isVisible(),
    key_in_session: await page.evaluate(() => sessionStorage.getItem("ferry.apiKey") !== null),
    connected: await names("connected"),
    available: await names("available"),
    attention: await attention(),
    headings: (await $("main h2").allTextContents()).map((s) => s.trim()),
    no_overflow: await noOverflow(),
  };
  if (DUE) {
    const item = card("connected", DUE).locator(".connections li").first();
    admin.due = { badge: await item.locator(".badge").textContent(), item: squash(await item.textContent()) };
  }
  // each available card: its meta line, and whether it has a connect form
  // (integrations that need no credential have none)
  admin.cards = Object.fromEntries(await $("#available .card").evaluateAll((els) => els.map((e) =>
    [e.querySelector("h3").textContent, { meta: e.querySelector(".meta").textContent,
                                          connect_form: e.querySelector("details.connect") !== null }])));

  // 2. connect through the card's form
  begin("connect " + CONNECT.slug);
  const avail = card("available", CONNECT.name);
  await avail.waitFor();
  await avail.locator("details.connect > summary").click();
  const form = avail.locator("form.connect-form");
  await form.waitFor({ state: "visible" });
  const inputs = await form.locator(".fields input").evaluateAll((els) =>
    els.map((e) => ({ name: e.name, type: e.type, label: e.parentElement.textContent.trim() })));
  for (const [label, value] of Object.entries(CONNECT.fields)) {
    await form.getByLabel(label, { exact: true }).fill(value);
  }
  await form.getByLabel("Label", { exact: true }).fill(CONNECT.label);
  const teamScope = form.getByLabel("Share with the team");
  const instructions = await form.locator(".instructions").textContent();
  const connect = out.connect = {
    inputs,
    instructions: (instructions || "").trim(),
    team_scope_visible: await teamScope.isVisible(),
  };
  await form.getByRole("button", { name: "Connect", exact: true }).click();
  const conn = card("connected", CONNECT.name);
  await conn.locator(".connections li", { hasText: CONNECT.account_label }).waitFor();
  connect.message = await message();
  connect.item = squash(await conn.locator(".connections li").first().textContent());
  connect.badge = await conn.locator(".connections li .badge").first().textContent();
  connect.in_available = (await card("available", CONNECT.name).count()) > 0;
  connect.attention = await attention();
  // the credential (the password fields) shows nowhere on the page
  const secrets = inputs.filter((i) => i.type === "password").map((i) => CONNECT.fields[i.label]).filter(Boolean);
  connect.secret_on_page = await page.evaluate((vals) =>
    vals.some((v) => document.body.innerText.includes(v) ||
                     [...document.querySelectorAll("input")].some((i) => i.value === v)), secrets);
  // what the API holds now
  const mine = await apiConnections(CONNECT.slug);
  connect.api = mine.map(({ id, scope, label, settings, account_label, status }) =>
    ({ id, scope, label, settings, account_label, status }));

  begin("screenshot");
  const shot = join(DIR, "connected-apps.png");
  await page.screenshot({ path: shot, fullPage: true });
  out.screenshots.push(shot);
  out.screenshot = shot;

  // 3. disconnect: cancel the confirm first (nothing happens), then accept
  begin("disconnect " + CONNECT.slug);
  const dialogs = [];
  onDialog = async (d) => { dialogs.push({ type: d.type(), text: d.message() }); await d.dismiss(); };
  await conn.getByRole("button", { name: "Disconnect" }).first().click();
  await until(() => dialogs.length === 1, "the confirm dialog");
  await conn.waitFor();
  const keptAfterCancel = (await conn.locator(".connections li").count()) === mine.length &&
    (await apiConnections(CONNECT.slug)).length === mine.length;
  onDialog = async (d) => { dialogs.push({ type: d.type(), text: d.message() }); await d.accept(); };
  await conn.getByRole("button", { name: "Disconnect" }).first().click();
  await card("available", CONNECT.name).waitFor();
  onDialog = null;
  out.disconnect = {
    dialogs,
    kept_after_cancel: keptAfterCancel,
    message: await message(),
    in_connected: (await card("connected", CONNECT.name).count()) > 0,
    in_available: true,
    connected: await names("connected"),
  };

  // 4. the member's view
  if (MEMBER_KEY) {
    begin("sign in as member");
    await $("#signout").click();
    await $("#signin").waitFor({ state: "visible" });
    const afterSignout = await page.evaluate(() => sessionStorage.getItem("ferry.apiKey"));
    await signIn(MEMBER_KEY);
    await signedIn();
    if (MEMBER_DISCONNECT) await card("connected", MEMBER_DISCONNECT).waitFor();
    const member = out.member = {
      key_cleared_by_signout: afterSignout === null,
      who: await text("#who"),
      connected: await names("connected"),
      attention: await attention(),
      team_scope_visible: await $(".team-scope").evaluateAll((els) => els.some((e) => !e.hidden)),
    };
    if (MEMBER_DISCONNECT) {
      begin("member disconnects a team connection", [{ status: 403, path: "/v1/connections/" }]);
      const team = card("connected", MEMBER_DISCONNECT);
      member.team_item = squash(await team.locator(".connections li").first().textContent());
      onDialog = async (d) => { await d.accept(); };
      await team.getByRole("button", { name: "Disconnect" }).first().click();
      await page.waitForFunction(() => document.querySelector("#message").classList.contains("error"));
      onDialog = null;
      member.refused = await message();
      member.still_connected = (await card("connected", MEMBER_DISCONNECT).count()) > 0;
    }
  }

  // 5. a wrong key
  begin("wrong key", [{ status: 401, path: "/v1/" }]);
  await $("#signout").click();
  await $("#signin").waitFor({ state: "visible" });
  await signIn(WRONG_KEY);
  await page.waitForFunction(() => document.querySelector("#message").classList.contains("error"));
  await $("#signin").waitFor({ state: "visible" });
  out.wrong_key = {
    signin_shown: await $("#signin").isVisible(),
    message: await message(),
    key_cleared: await page.evaluate(() => sessionStorage.getItem("ferry.apiKey") === null),
    who: await text("#who"),
    signout_hidden: await $("#signout").isHidden(),
    cards: await $(".card").count(),
  };
  const shot2 = join(DIR, "wrong-key.png");
  await page.screenshot({ path: shot2, fullPage: true });
  out.screenshots.push(shot2);

  // The CSP listener works: an inline style is refused and reported.
  begin("csp canary");
  const before = expectedErrors.filter((e) => e.kind === "csp").length;
  await page.evaluate(() => {
    const s = document.createElement("style");
    s.textContent = "body { outline: 1px solid red }";
    document.head.append(s);
  });
  await until(() => expectedErrors.filter((e) => e.kind === "csp").length > before, "the CSP canary's report", 5000);
  out.csp_canary_caught = true;
  // (the step stays "csp canary": its console message may come a moment later)
}

main().then(() => finish(), (err) => finish(err));
