// page_oauth.mjs: connects an OAuth integration from the Connected Apps page
// in a real browser (Debian's Chromium through playwright-core): sign in to
// the page with an API key, press "Sign in with <name>" on the card, log in
// and consent at the identity provider (oidc-provider's development pages),
// come back to the page, and report what it shows as one JSON line.
//
// Environment: FERRY_URL, FERRY_KEY, FERRY_INTEGRATION (the card's name),
// CHROMIUM (default /usr/bin/chromium), FERRY_PAGE_DIR (Chromium's files and
// a screenshot; default a new folder under $TMPDIR).
import { chromium } from "playwright-core";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = process.env;
const BASE = env.FERRY_URL.replace(/\/+$/, "");
const NAME = env.FERRY_INTEGRATION;
const DIR = env.FERRY_PAGE_DIR || mkdtempSync(join(tmpdir(), "ferry-page-oauth-"));
const out = { ok: false, steps: [], page_errors: [] };
const watchdog = setTimeout(() => done(new Error("deadline of 40 s passed")), 40000);
let browser;

async function done(err) {
  clearTimeout(watchdog);
  if (err) out.error = `${out.steps.at(-1) || "start"}: ${err.message.split("\n")[0]}`;
  out.ok = !err && out.page_errors.length === 0;
  try { if (browser) await browser.close(); } catch { /* gone */ }
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(out.ok ? 0 : 1);
}

async function main() {
  for (const d of ["config", "cache", "tmp", "home"]) mkdirSync(join(DIR, d), { recursive: true });
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
  const page = await browser.newPage();
  page.on("pageerror", (e) => out.page_errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error" && new URL(page.url()).origin === new URL(BASE).origin
                                 && !/fonts\.googleapis/.test(m.text())) out.page_errors.push(m.text()); });

  out.steps.push("open the page");
  await page.goto(BASE + "/");
  await page.fill("#key", env.FERRY_KEY);
  await page.click("#signin button[type=submit]");
  const card = page.locator("article.card", { has: page.locator("h3.name", { hasText: NAME }) });
  await card.waitFor({ timeout: 10000 });

  out.steps.push("press sign in");
  await card.locator("summary").click();
  await card.getByRole("button", { name: `Sign in with ${NAME}` }).click();
  await page.waitForURL((u) => u.pathname.startsWith("/interaction/"), { timeout: 10000 });
  out.left_for = new URL(page.url()).origin;

  out.steps.push("log in at the provider");
  await page.fill("input[name=login]", "ann");
  await page.fill("input[name=password]", "any");
  await page.click("button[type=submit]");

  out.steps.push("consent");
  await page.waitForSelector("input[name=prompt][value=consent]", { state: "attached", timeout: 10000 });
  await page.click("button[type=submit]");

  out.steps.push("back at ferry");
  await page.waitForURL((u) => u.origin === new URL(BASE).origin, { timeout: 10000 });
  await page.waitForFunction(() => /connected\./.test(document.querySelector("#message").textContent),
                             null, { timeout: 10000 });
  out.message = (await page.textContent("#message")).trim();
  out.url = page.url();
  const connected = page.locator("#connected article.card", { has: page.locator("h3.name", { hasText: NAME }) });
  await connected.waitFor({ timeout: 10000 });
  out.connection = (await connected.locator("ul.connections").innerText()).replace(/\s+/g, " ").trim();
  await page.screenshot({ path: join(DIR, "oauth-connected.png") });
  out.screenshot = join(DIR, "oauth-connected.png");
}

main().then(() => done(), (e) => done(e));
