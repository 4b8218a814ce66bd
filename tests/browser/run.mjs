// Opens page.html in headless Chromium (Debian's, via playwright-core) and
// prints its console lines as "PAGE <line>"; exits 0 once the page got a
// message, non-zero on an error or after WATCHDOG_MS.
//
//   node run.mjs PORT        (the broker's WebSocket port)
//   CHROMIUM=/path/to/chromium overrides /usr/bin/chromium.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const WATCHDOG_MS = 9000;
const port = process.argv[2];
const profile = mkdtempSync(join(tmpdir(), "roost-chromium-"));
let browser;

async function finish(code) {
  if (browser) await browser.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
  process.exit(code);
}
setTimeout(() => {
  console.log("FAIL: watchdog");
  finish(3);
}, WATCHDOG_MS);

// As root, in a sandbox without a network: no sandbox of its own, and none
// of its background connections.
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
browser = context;
const page = context.pages()[0] || (await context.newPage());
page.on("console", (msg) => {
  const line = msg.text();
  console.log("PAGE " + line);
  if (line.startsWith("GOT ")) finish(0);
  if (line.startsWith("ERROR") || line === "CLOSED") finish(1);
});
page.on("pageerror", (e) => {
  console.log("FAIL: page error " + e.message);
  finish(1);
});
const url = pathToFileURL(join(import.meta.dirname, "page.html"));
url.search = `port=${port}`;
await page.goto(url.href);
