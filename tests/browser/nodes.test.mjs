// Real-browser test of the chat demo across two ringws nodes that share a Redis (`ringws --redis ...`):
// a page on each node joins the same room; each sees the other's presence (labelled with the other node and its
// per-node count) and every message, exactly once. Run by scripts/browser-nodes-test.sh, which starts Redis and
// both nodes.
//
//   RINGWS_URL_A=http://127.0.0.1:PORT_A RINGWS_URL_B=http://127.0.0.1:PORT_B node --test nodes.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join as pathJoin } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const A = (process.env.RINGWS_URL_A || '').replace(/\/+$/, '');
const B = (process.env.RINGWS_URL_B || '').replace(/\/+$/, '');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = pathJoin(dirname(fileURLToPath(import.meta.url)), 'artifacts');
const T = 10_000;

mkdirSync(ARTIFACTS, { recursive: true });

let browser;
const pageErrors = [];

before(async () => {
  assert.ok(A && B, 'RINGWS_URL_A and RINGWS_URL_B must name the two nodes');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30_000,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
  });
});

after(async () => {
  await browser?.close();
  assert.deepEqual(pageErrors, [], 'no page errors');
});

async function openPage(base) {
  const ctx = await browser.newContext({ viewport: { width: 1200, height: 860 } });
  ctx.setDefaultTimeout(T);
  const page = await ctx.newPage();
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  const res = await page.goto(`${base}/`, { waitUntil: 'load' });
  assert.equal(res?.status(), 200);
  return page;
}

const tid = (page, id) => page.getByTestId(id);
const log = (page, room) => page.locator(`[data-testid=chat-room-log][data-room="${room}"]`);

async function setName(page, name) {
  await tid(page, 'chat-name').fill(name);
  await tid(page, 'chat-set-name').click();
  await tid(page, 'chat-me').filter({ hasText: `you are ${name}` }).waitFor();
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

test('both nodes report healthy (Redis connected)', async () => {
  for (const base of [A, B]) {
    const res = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(T) });
    assert.equal((await res.text()).trim(), 'ok');
  }
});

test('chat: a page on each node, one room, presence per node, every message once', { timeout: 60_000 }, async () => {
  const room = `span-${Math.random().toString(36).slice(2, 8)}`;
  const nodeOf = async (base) => (await (await fetch(`${base}/stats`)).json()).node;
  const [nodeA, nodeB] = [await nodeOf(A), await nodeOf(B)];
  assert.match(nodeA, /^[0-9a-f]{6}$/);
  assert.notEqual(nodeA, nodeB);
  const a = await openPage(A);
  const b = await openPage(B);
  try {
    for (const p of [a, b]) await tid(p, 'chat-status').filter({ hasText: 'OPEN' }).waitFor();
    await setName(a, 'alice');
    await setName(b, 'bob');
    await join(a, room);
    await join(b, room);

    // alice (node A) sees bob join on node B: B's count, labelled with B; her own tab still counts node A only.
    await log(a, room).locator('.presence', { hasText: `bob joined #${room} (1 on node ${nodeB})` }).first().waitFor();
    await a.locator(`[data-testid=chat-room-tab][data-room="${room}"] .count`).filter({ hasText: /^1$/ }).waitFor();

    await say(a, 'hello from node A');
    await say(b, 'hello from node B');
    for (const p of [a, b]) {
      for (const text of ['hello from node A', 'hello from node B']) {
        await log(p, room).locator('.line', { hasText: text }).first().waitFor();
      }
    }
    // Exactly once: give a duplicate time to show up, then count.
    await a.waitForTimeout(500);
    for (const p of [a, b]) {
      for (const text of ['hello from node A', 'hello from node B']) {
        assert.equal(await log(p, room).locator('.line .text', { hasText: text }).count(), 1, `${text} once`);
      }
    }
    await a.screenshot({ path: pathJoin(ARTIFACTS, 'nodes-alice-on-a.png'), fullPage: true });
    await b.screenshot({ path: pathJoin(ARTIFACTS, 'nodes-bob-on-b.png'), fullPage: true });
  } finally {
    await a.context().close();
    await b.context().close();
  }
});
