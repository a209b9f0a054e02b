// Real-browser test of the ringws demo page: headless system Chromium driven
// by playwright-core, run with `node --test`.
//
//   RINGWS_URL=http://127.0.0.1:1338 node --test browser.test.mjs
//   RINGWS_URL=https://127.0.0.1:1338 node --test browser.test.mjs   (a TLS server; certificate errors ignored)
//
// Env: RINGWS_URL (server, default http://127.0.0.1:1338),
//      CHROMIUM (browser binary, default /usr/bin/chromium).
// Screenshots go to tests/browser/artifacts/*.png.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join as pathJoin } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BASE = (process.env.RINGWS_URL || 'http://127.0.0.1:1338').replace(/\/+$/, '');
// Over https (a test certificate): certificate errors are ignored, and the page must then speak wss.
const HTTPS = BASE.startsWith('https:');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = pathJoin(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const T = 10_000; // default bound for every wait / action
const XSS = '<img src=x onerror=alert(1)>';

mkdirSync(ARTIFACTS, { recursive: true });

let browser;
const pageErrors = [];

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...(HTTPS ? ['--ignore-certificate-errors'] : []),
    ],
  });
});

after(async () => {
  await browser?.close();
});

/** A fresh context + page; fails the test on any dialog (e.g. an injected alert). */
async function openPage(viewport = { width: 1360, height: 900 }, colorScheme = 'light') {
  const ctx = await browser.newContext({ viewport, colorScheme, ignoreHTTPSErrors: HTTPS });
  ctx.setDefaultTimeout(T);
  ctx.setDefaultNavigationTimeout(T);
  const page = await ctx.newPage();
  // Keep every WebSocket the page opens, so tests can read what it negotiated (ws.extensions).
  await page.addInitScript(() => {
    const Native = window.WebSocket;
    window.__sockets = [];
    window.WebSocket = class extends Native {
      constructor(...args) {
        super(...args);
        window.__sockets.push(this);
      }
    };
  });
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  page.on('dialog', async (d) => {
    pageErrors.push(`unexpected dialog: ${d.type()} ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  const res = await page.goto(`${BASE}/`, { waitUntil: 'load' });
  assert.equal(res?.status(), 200, 'GET / must return 200');
  return page;
}

const tid = (page, id) => page.getByTestId(id);
const shot = (page, name) => page.screenshot({ path: pathJoin(ARTIFACTS, `${name}.png`), fullPage: true });

test('server is up (/healthz)', async () => {
  const res = await fetch(`${BASE}/healthz`, { signal: AbortSignal.timeout(T) });
  assert.equal(res.status, 200);
  assert.equal((await res.text()).trim(), 'ok');
});

test('echo pane: connect, text + binary echo, disconnect', { timeout: 60_000 }, async () => {
  const page = await openPage();
  try {
    const status = tid(page, 'echo-status');
    await assertText(status, 'CLOSED');
    const url = await tid(page, 'echo-url').inputValue();
    assert.match(url, /^wss?:\/\/.+\/echo$/, 'default echo URL is same-origin /echo');
    assert.equal(url.startsWith('wss://'), HTTPS, 'the page derives wss from https');

    // Record every state the badge shows, so the short CONNECTING / CLOSING phases are seen too.
    await page.evaluate(() => {
      const badge = document.querySelector('[data-testid=echo-status]');
      window.__echoStates = [badge.textContent];
      new MutationObserver(() => window.__echoStates.push(badge.textContent))
        .observe(badge, { childList: true, characterData: true, subtree: true });
    });

    await tid(page, 'echo-connect').click();
    await assertText(status, 'OPEN');
    // The binary's default compression (shared) answers the browser's permessage-deflate offer.
    const extensions = await page.evaluate(() => window.__sockets.map((s) => [s.url, s.extensions]));
    const echoExt = extensions.filter(([u]) => u.endsWith('/echo')).map(([, e]) => e);
    assert.ok(echoExt.length >= 1, `the echo socket was seen: ${JSON.stringify(extensions)}`);
    for (const e of echoExt) {
      assert.match(e, /^permessage-deflate\b/, `negotiated extension: ${JSON.stringify(extensions)}`);
    }

    const log = tid(page, 'echo-log');
    const msg = `hello ringws ${Date.now()}`;
    await tid(page, 'echo-input').fill(msg);
    await tid(page, 'echo-input').press('Enter'); // Enter sends
    await log.locator('li.recv', { hasText: msg }).first().waitFor();
    await log.locator('li.sent', { hasText: msg }).first().waitFor();

    await tid(page, 'echo-binary-size').fill('37');
    await tid(page, 'echo-send-binary').click();
    await log.locator('li.recv', { hasText: 'binary 37 bytes' }).first().waitFor();

    // Text that looks like HTML is echoed as text.
    await tid(page, 'echo-input').fill(XSS);
    await tid(page, 'echo-send').click();
    await log.locator('li.recv', { hasText: XSS }).first().waitFor();
    assert.equal(await log.locator('img').count(), 0, 'no <img> element inside the echo log');

    // Latency probes for ~1.5 s: figures become numbers.
    await tid(page, 'echo-latency-toggle').check();
    await page.waitForTimeout(1500);
    await tid(page, 'echo-latency-toggle').uncheck();
    assert.match(await tid(page, 'echo-rtt-last').textContent(), /^\d+(\.\d+)? ms$/);
    assert.match(await tid(page, 'echo-rtt-p95').textContent(), /^\d+(\.\d+)? ms$/);
    assert.equal(await log.locator('li.recv', { hasText: /^.*ping \d+ \d+/ }).count(), 0, 'probes are not logged');

    await shot(page, 'echo-open');

    await tid(page, 'echo-disconnect').click();
    await assertText(status, 'CLOSED');
    await log.locator('li', { hasText: 'closed (code 1000' }).first().waitFor();
    const states = (await page.evaluate(() => window.__echoStates)).filter((x, i, a) => x !== a[i - 1]);
    assert.deepEqual(states, ['CLOSED', 'CONNECTING', 'OPEN', 'CLOSING', 'CLOSED'], 'state badge sequence');
    const colours = new Set();
    for (const st of ['open', 'closed']) {
      colours.add(await page.evaluate((c) => {
        const e = document.createElement('span');
        e.className = `state state-${c}`;
        document.body.append(e);
        const col = getComputedStyle(e).color;
        e.remove();
        return col;
      }, st));
    }
    assert.equal(colours.size, 2, 'OPEN and CLOSED are coloured differently');
    await shot(page, 'echo-closed');
  } finally {
    await page.context().close();
  }
});

test('chat: two pages, names, same room, presence, messages, no HTML injection', { timeout: 60_000 }, async () => {
  const room = `room-${Math.random().toString(36).slice(2, 8)}`;
  const a = await openPage();
  const b = await openPage({ width: 1100, height: 860 }, 'dark');
  try {
    for (const p of [a, b]) await assertText(tid(p, 'chat-status'), 'OPEN');

    await setName(a, 'alice');
    await setName(b, 'bob');

    await join(a, room);
    await join(b, room);

    const logA = activeLog(a, room);
    const logB = activeLog(b, room);
    // alice sees bob's join notice (with the count), bob sees his own.
    await logA.locator('.presence', { hasText: `bob joined #${room} (2 here)` }).first().waitFor();
    await logB.locator('.presence', { hasText: `joined #${room}` }).first().waitFor();
    await assertText(a.locator(`[data-testid=chat-room-tab][data-room="${room}"] .count`), '2');

    await say(a, 'hi bob, alice here');
    await say(b, 'hello alice!');
    for (const log of [logA, logB]) {
      await log.locator('.line', { hasText: 'hi bob, alice here' }).filter({ hasText: 'alice' }).first().waitFor();
      await log.locator('.line', { hasText: 'hello alice!' }).filter({ hasText: 'bob' }).first().waitFor();
    }

    // HTML injection: the payload must arrive as literal text, create no element, run no script.
    await say(b, XSS);
    for (const p of [a, b]) {
      const log = activeLog(p, room);
      const line = log.locator('.line .text', { hasText: XSS }).first();
      await line.waitFor();
      assert.equal(await line.textContent(), XSS, 'payload rendered literally');
      assert.equal(await tid(p, 'chat-log').locator('img').count(), 0, 'no <img> element inside the chat log');
      assert.equal(await p.locator('img[src=x]').count(), 0, 'no injected <img> anywhere');
    }
    // A name and a room that look like HTML are also text.
    await setName(a, '<b>mallory</b>');
    await say(a, 'bold?');
    await logB.locator('.line .who', { hasText: '<b>mallory</b>' }).first().waitFor();
    assert.equal(await tid(b, 'chat-log').locator('b').count(), 0, 'no <b> element from a name');

    // A second room on alice's page becomes active; bob's message in the first one shows an unread badge.
    const room2 = `${room}-2`;
    await join(a, room2);
    await say(b, 'are you there?');
    await assertText(a.locator(`[data-testid=chat-room-tab][data-room="${room}"] .badge`), '1');
    await a.locator(`[data-testid=chat-room-tab][data-room="${room}"]`).click();
    assert.equal(await a.locator(`[data-testid=chat-room-tab][data-room="${room}"] .badge`).isHidden(), true, 'badge cleared');
    await logA.locator('.line', { hasText: 'are you there?' }).first().waitFor();

    // Leave: bob sees the left notice with the new count.
    await a.getByTestId('chat-leave').click();
    await logB.locator('.presence', { hasText: `<b>mallory</b> left #${room} (1 here)` }).first().waitFor();
    assert.equal(await a.locator(`[data-testid=chat-room-tab][data-room="${room}"]`).count(), 0, 'tab removed after leave');

    await shot(b, 'chat-bob-dark');
    await shot(a, 'chat-alice-light');
  } finally {
    await a.context().close();
    await b.context().close();
  }
});

test('stats strip shows numbers; narrow layout stacks the panes', { timeout: 60_000 }, async () => {
  const page = await openPage({ width: 420, height: 900 });
  try {
    await page.waitForFunction(
      () => /^\d[\d,]*$/.test(document.querySelector('[data-testid=stats-connections]')?.textContent ?? ''),
      null, { timeout: T });
    // Rates need two polls.
    await page.waitForFunction(
      () => /^\d[\d,.]*$/.test(document.querySelector('[data-testid=stats-in]')?.textContent ?? ''),
      null, { timeout: T });
    const conns = Number((await tid(page, 'stats-connections').textContent()).replace(/,/g, ''));
    assert.ok(conns >= 1, `connections >= 1 (this page's chat socket), got ${conns}`);

    // Graceful failure: /stats unreachable -> "stats unavailable", no uncaught error.
    await page.route('**/stats', (route) => route.abort('connectionrefused'));
    await assertText(tid(page, 'stats-status'), 'stats unavailable');
    await shot(page, 'stats-unavailable');
    await page.unroute('**/stats');
    await page.waitForFunction(
      () => /^\d/.test(document.querySelector('[data-testid=stats-connections]')?.textContent ?? ''),
      null, { timeout: T });

    const [echoBox, chatBox] = await Promise.all(
      ['#echo-title', '#chat-title'].map((s) => page.locator(s).boundingBox()));
    assert.ok(chatBox.y > echoBox.y + 100, 'panes stacked on a narrow screen');
    await shot(page, 'narrow');
  } finally {
    await page.context().close();
  }
});

test('no uncaught page errors or dialogs', () => {
  assert.deepEqual(pageErrors, []);
});

// ───────────────────────── helpers ─────────────────────────

async function assertText(locator, text) {
  await locator.filter({ hasText: text }).waitFor({ timeout: T }).catch(async (err) => {
    const got = await locator.textContent({ timeout: 1000 }).catch(() => '?');
    throw new Error(`expected "${text}", got "${got}": ${err.message.split('\n')[0]}`);
  });
}

async function setName(page, name) {
  await tid(page, 'chat-name').fill(name);
  await tid(page, 'chat-set-name').click();
  await assertText(tid(page, 'chat-me'), `you are ${name}`);
}

async function join(page, room) {
  await tid(page, 'chat-room').fill(room);
  await tid(page, 'chat-join').click();
  await page.locator(`[data-testid=chat-room-tab][data-room="${room}"][aria-selected=true]`).waitFor();
}

async function say(page, text) {
  await tid(page, 'chat-input').fill(text);
  await tid(page, 'chat-input').press('Enter');
  await page.waitForFunction(() => document.querySelector('[data-testid=chat-input]').value === '', null, { timeout: T });
}

function activeLog(page, room) {
  return page.locator(`[data-testid=chat-room-log][data-room="${room}"]`);
}
