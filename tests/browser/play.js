// Opens each URL given on the command line in headless Chromium (through
// playwright-core) and watches the page's <video> for SECONDS: how far
// its currentTime advanced from the first moment it played, and any media
// error or page error. Prints one JSON line per page:
// {"url":..,"advanced_s":..,"first_play_ms":..,"media_error":..,"page_errors":[..]}
// Usage: node play.js SECONDS URL...
"use strict";
const { chromium } = require("playwright-core");

async function watch(browser, url, seconds) {
  const page = await browser.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  const opened = Date.now();
  await page.goto(url);
  let first = null;
  let firstPlayMs = null;
  let last = 0;
  let mediaError = null;
  const end = opened + seconds * 1000;
  while (Date.now() < end) {
    await page.waitForTimeout(500);
    const s = await page.evaluate(() => {
      const v = document.querySelector("video");
      return v ? { t: v.currentTime, e: v.error ? v.error.code + " " + v.error.message : null } : { t: 0, e: "no video element" };
    });
    if (s.e && !mediaError) mediaError = s.e + " at " + s.t.toFixed(1) + " s, " + (Date.now() - opened) + " ms after opening";
    if (s.t > 0 && first === null) {
      first = s.t;
      firstPlayMs = Date.now() - opened;
    }
    last = s.t;
  }
  await page.close();
  return { url, advanced_s: first === null ? 0 : last - first, first_play_ms: firstPlayMs, media_error: mediaError, page_errors: pageErrors };
}

(async () => {
  const [seconds, ...urls] = process.argv.slice(2);
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium" });
  try {
    const results = await Promise.all(urls.map((u) => watch(browser, u, Number(seconds))));
    for (const r of results) console.log(JSON.stringify(r));
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(String(e));
  process.exit(1);
});
