/**
 * Federation through the chat client's UI (issue 5): two isolated browser contexts, each with its own homeserver in
 * its service worker, meet through one `hearth start` Node peer (the relay that serves the app). Both users are
 * made by the first-run screen; A creates a room and invites B's Matrix ID from the member list; B accepts the
 * invite from the top of its room list; both chat with the composer.
 *
 * Screenshots go to artifacts/screenshots/federation-*.png.
 */
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { launchChromium, startApp } from './helpers/browser.js';
import type { RunningApp } from './helpers/browser.js';
import { createRoom, expectCount, firstRun, messagesWith, send, shot } from './helpers/ui.js';

// Everything that crosses the libp2p link (relay reservation, WebRTC upgrade, make_join/send_join) gets time.
const WAIT = { timeout: 60_000, interval: 250 };

let app: RunningApp;
let browser: Browser;
const contexts: BrowserContext[] = [];

beforeAll(async () => {
  [app, browser] = await Promise.all([startApp(), launchChromium()]);
});
afterAll(async () => {
  await Promise.allSettled(contexts.map((c) => c.close()));
});

async function newPage(): Promise<Page> {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light', reducedMotion: 'reduce' });
  contexts.push(ctx);
  return ctx.newPage();
}

/**
 * Until the page's node (the leader tab's libp2p host, src/browser/p2p) holds a relay reservation on the Node peer:
 * before that, another browser cannot dial it and the invite would fail.
 */
async function reachable(page: Page): Promise<void> {
  await vi.waitFor(async () => {
    const circuit = await page.evaluate(() => {
      const host = (globalThis as any).hearthNetwork?.host;
      return host ? (host.libp2p.getMultiaddrs() as unknown[]).map(String).some((m) => m.includes('/p2p-circuit')) : false;
    });
    expect(circuit).toBe(true);
  }, WAIT);
}

describe('two browsers chat through the UI', () => {
  it('A creates a room and invites B from the member list; B accepts from its room list; both see each other’s messages once', async () => {
    const [a, b] = await Promise.all([newPage(), newPage()]);
    const [alice, bob] = await Promise.all([firstRun(a, app.url, 'Alice', WAIT), firstRun(b, app.url, 'Bob', WAIT)]);
    // Each has its own homeserver: neither is the Node peer's, and they differ.
    const serverOf = (id: string) => id.slice(id.indexOf(':') + 1);
    expect(alice).toMatch(/^@alice:/);
    expect(bob).toMatch(/^@bob:/);
    expect(serverOf(alice)).not.toBe(serverOf(bob));
    expect([serverOf(alice), serverOf(bob)]).not.toContain(app.serverName);
    await Promise.all([reachable(a), reachable(b)]);

    const roomId = await createRoom(a, 'Fireside', 'Two tabs, one room', WAIT);
    await a.getByTestId('open-members').click();
    await a.getByTestId('invite-input').fill(bob);
    await a.getByTestId('invite-submit').click();
    const bobRow = a.locator(`[data-testid=member][data-user-id="${bob}"]`);
    await bobRow.filter({ hasText: 'Invited' }).waitFor(WAIT);

    // B: the invite arrives over federation and sits at the top of the room list.
    const invite = b.locator(`[data-testid=invite-item][data-room-id="${roomId}"]`);
    await invite.waitFor(WAIT);
    expect(await b.getByTestId('room-list').locator('li').first().getAttribute('data-room-id')).toBe(roomId);
    await invite.getByTestId('accept-invite').click();
    await b.getByTestId('room-name').filter({ hasText: 'Fireside' }).waitFor(WAIT);
    await b.getByTestId('composer').waitFor(WAIT);
    // A sees B's join in the member list.
    await bobRow.filter({ hasNotText: 'Invited' }).waitFor(WAIT);
    await a.getByTestId('close-panel').click();

    await send(a, 'hello from tab A');
    await send(b, 'hello from tab B');
    for (const p of [a, b]) {
      await expectCount(messagesWith(p, 'hello from tab A'), 1, WAIT);
      await expectCount(messagesWith(p, 'hello from tab B'), 1, WAIT);
    }
    // A second round, so a late duplicate of the first would have arrived by the time it shows.
    await send(b, 'how is the weather?');
    await send(a, 'sunny, thanks');
    for (const p of [a, b]) {
      await expectCount(messagesWith(p, 'how is the weather?'), 1, WAIT);
      await expectCount(messagesWith(p, 'sunny, thanks'), 1, WAIT);
      await expectCount(p.locator('[data-testid=message]:not([data-status=sent])'), 0, WAIT);
      expect(await p.getByTestId('message-body').allTextContents()).toEqual(
        expect.arrayContaining(['hello from tab A', 'hello from tab B', 'how is the weather?', 'sunny, thanks']),
      );
      expect(await messagesWith(p, 'hello from tab A').count()).toBe(1);
      expect(await messagesWith(p, 'hello from tab B').count()).toBe(1);
    }
    // Each sees the other as the sender of their messages.
    await a.locator('[data-testid=message]').filter({ hasText: 'hello from tab B' }).getByTestId('sender').filter({ hasText: 'Bob' }).waitFor(WAIT);
    await b.locator('[data-testid=message]').filter({ hasText: 'hello from tab A' }).getByTestId('sender').filter({ hasText: 'Alice' }).waitFor(WAIT);

    await shot(a, 'federation-a');
    await shot(b, 'federation-b');
  });
});
