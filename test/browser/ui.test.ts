/**
 * The chat client (src/client) in real Chromium, through its UI only, against the homeserver in its own service
 * worker: first run, rooms and messages, reload, offline, two tabs, a second user, members and settings, phone
 * layout and dark theme. The tests of the first describe form one story and run in order (one browser profile).
 *
 * Screenshots of the main screens go to artifacts/screenshots/*.png; when a test fails, the last console lines of
 * the pages and workers are printed and each open page is shot (failure-<context>-<page>.png).
 */
import { mkdirSync } from 'node:fs';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it, onTestFailed, vi } from 'vitest';
import { api, launchChromium, registerUser, startApp } from './helpers/browser.js';
import type { RunningApp } from './helpers/browser.js';
import { SHOTS, createRoom, expectCount, firstRun as firstRunAt, messagesWith, send, shot } from './helpers/ui.js';

const WAIT = { timeout: 20_000, interval: 100 };

let app: RunningApp;
let browser: Browser;
const contexts: BrowserContext[] = [];
/** The last console lines of every page and service worker of the test's contexts: printed when a test fails. */
const consoleLines: string[] = [];
const stamp = () => new Date().toISOString().slice(11, 23);
function keep(line: string): void {
  consoleLines.push(`${stamp()} ${line}`);
  if (consoleLines.length > 1500) consoleLines.splice(0, consoleLines.length - 1500);
}

beforeEach(() => {
  onTestFailed(async () => {
    console.error(`console of the pages and workers before the failure:\n${consoleLines.join('\n')}`);
    for (const [i, ctx] of contexts.entries()) {
      for (const [j, p] of ctx.pages().entries()) {
        const status = await p.getByTestId('homeserver-status').textContent({ timeout: 1000 }).catch(() => '?');
        console.error(`context ${i} page ${j} ${p.url()}: status ${status}`);
        await shot(p, `failure-${i}-${j}`).catch(() => undefined);
      }
    }
  });
});

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  [app, browser] = await Promise.all([startApp(), launchChromium()]);
});
afterAll(async () => {
  await Promise.allSettled(contexts.map((c) => c.close()));
});

async function newContext(opts: Parameters<Browser['newContext']>[0] = {}): Promise<BrowserContext> {
  // Reduced motion: no transitions, so a screenshot right after a theme switch shows the final colours.
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light', reducedMotion: 'reduce', ...opts });
  contexts.push(ctx);
  const n = contexts.length - 1;
  // The context's console events include its service worker's.
  ctx.on('console', (m) => keep(`[ctx ${n} ${m.page() ? 'page' : 'worker'}] ${m.type()}: ${m.text()}`));
  ctx.on('serviceworker', (w) => {
    keep(`[ctx ${n}] service worker ${w.url()} started`);
    w.on('close', () => keep(`[ctx ${n}] service worker ${w.url()} closed`));
  });
  return ctx;
}

/** Both colour schemes of the same screen. */
async function shots(page: Page, name: string): Promise<void> {
  await shot(page, `${name}-light`);
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot(page, `${name}-dark`);
  await page.emulateMedia({ colorScheme: 'light' });
}

const firstRun = (page: Page, name: string) => firstRunAt(page, app.url, name);

const roomPath = (roomId: string) => `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}`;

describe('the chat client, one profile', () => {
  let ctx: BrowserContext;
  let page: Page;
  let me: string;
  let roomId: string;
  let carolDm: { token: string; roomId: string };

  it('first run: a name becomes an account, and the Matrix ID is shown', async () => {
    ctx = await newContext();
    page = await ctx.newPage();
    await page.goto(app.url);
    await page.getByTestId('first-run-name').waitFor(WAIT);
    await shots(page, 'first-run-desktop');
    me = await firstRun(page, 'Alice Smith');
    expect(me).toMatch(/^@alice-smith:[a-z0-9]+$/);
    // The homeserver is the page's own (service worker), not the Node peer that served the files.
    expect(me.endsWith(`:${app.serverName}`)).toBe(false);
    expect(await page.getByTestId('home-matrix-id').textContent()).toBe(me);
    await vi.waitFor(async () => expect(await page.getByTestId('homeserver-status').textContent()).toBe('Homeserver running'), WAIT);
    await shots(page, 'home-desktop');
  });

  it('creates a room and sends messages with Enter (Shift+Enter for a new line)', async () => {
    roomId = await createRoom(page, 'Garden club', 'Tomatoes, mostly');
    await send(page, 'Hello there!');
    await send(page, 'Have a look at https://matrix.org/docs — it is good 🍅');
    const composer = page.getByTestId('composer');
    await composer.fill('line one');
    await composer.press('Shift+Enter');
    await composer.type('line two');
    await composer.press('Enter');
    await expectCount(messagesWith(page, 'Hello there!'), 1);
    await expectCount(page.getByTestId('message-body').filter({ hasText: 'line one\nline two' }), 1);
    // Every echo is confirmed by the server; links are anchors, not HTML.
    await expectCount(page.locator('[data-testid=message][data-status=sent]'), 3);
    expect(await page.getByRole('link', { name: 'https://matrix.org/docs' }).getAttribute('rel')).toContain('noopener');
    expect(await page.getByTestId('room-item-name').first().textContent()).toBe('Garden club');
    await shots(page, 'room-desktop');
  });

  it('reload: still logged in and the history is there', async () => {
    await page.reload();
    await expectCount(messagesWith(page, 'Hello there!'), 1);
    expect(await page.getByTestId('first-run-name').count()).toBe(0);
    expect(await page.getByTestId('sidebar-matrix-id').textContent()).toBe(me);
  });

  it('offline: the app loads and the local room works, sending included', async () => {
    await ctx.setOffline(true);
    try {
      await page.reload();
      await expectCount(messagesWith(page, 'Hello there!'), 1);
      await send(page, 'sent while offline');
      await expectCount(page.locator('[data-testid=message][data-status=sent]').filter({ hasText: 'sent while offline' }), 1);
    } finally {
      await ctx.setOffline(false);
    }
  });

  it('two tabs: a message sent in one appears in the other exactly once', async () => {
    const tab2 = await ctx.newPage();
    await tab2.goto(`${app.url}/#/room/${encodeURIComponent(roomId)}`);
    await expectCount(messagesWith(tab2, 'Hello there!'), 1);
    await send(page, 'from tab one');
    await send(tab2, 'from tab two');
    for (const p of [page, tab2]) {
      await expectCount(messagesWith(p, 'from tab one'), 1);
      await expectCount(messagesWith(p, 'from tab two'), 1);
      await expectCount(p.locator('[data-testid=message]:not([data-status=sent])'), 0);
    }
    // Give a late duplicate the chance to show up before counting again.
    await page.waitForTimeout(500);
    expect(await messagesWith(tab2, 'from tab one').count()).toBe(1);
    expect(await messagesWith(page, 'from tab two').count()).toBe(1);
    await tab2.close();
  });

  it('edits and deletes my own message', async () => {
    await send(page, 'tpyo here');
    const mine = page.locator('[data-testid=message][data-status=sent]').filter({ hasText: 'tpyo here' });
    await mine.waitFor(WAIT);
    await mine.hover();
    await mine.getByRole('button', { name: 'Edit message' }).click();
    const composer = page.getByTestId('composer');
    await vi.waitFor(async () => expect(await composer.inputValue()).toBe('tpyo here'), WAIT);
    await composer.fill('typo fixed');
    await composer.press('Enter');
    await expectCount(messagesWith(page, 'typo fixed'), 1);
    await expectCount(messagesWith(page, 'tpyo here'), 0);
    const edited = page.locator('[data-testid=message]').filter({ hasText: 'typo fixed' });
    await edited.getByTestId('edited').waitFor(WAIT);
    await edited.hover();
    await edited.getByRole('button', { name: 'Delete' }).click();
    await edited.getByRole('button', { name: 'Yes' }).click();
    await expectCount(messagesWith(page, 'typo fixed'), 0);
    expect(await page.getByTestId('message-deleted').count()).toBe(1);
  });

  it('invites a second user from the member list; their messages, typing, edits, receipts and redactions show', async () => {
    const bob = await registerUser(page, 'bob');
    await page.getByTestId('open-members').click();
    await page.getByTestId('invite-input').fill(bob.userId);
    await page.getByTestId('invite-submit').click();
    const bobRow = page.locator(`[data-testid=member][data-user-id="${bob.userId}"]`);
    await bobRow.filter({ hasText: 'Invited' }).waitFor(WAIT);
    await shots(page, 'members-desktop');

    expect((await api(page, 'POST', `/_matrix/client/v3/join/${encodeURIComponent(roomId)}`, {}, bob.token)).status).toBe(200);
    await bobRow.filter({ hasNotText: 'Invited' }).waitFor(WAIT);
    await page.getByTestId('close-panel').click();

    const sent = await api(page, 'PUT', `${roomPath(roomId)}/send/m.room.message/b1`, { msgtype: 'm.text', body: 'hi from bob' }, bob.token);
    expect(sent.status).toBe(200);
    await expectCount(messagesWith(page, 'hi from bob'), 1);
    expect(await page.getByTestId('sender').filter({ hasText: 'bob' }).count()).toBeGreaterThan(0);

    await api(page, 'PUT', `${roomPath(roomId)}/typing/${encodeURIComponent(bob.userId)}`, { typing: true, timeout: 20_000 }, bob.token);
    await vi.waitFor(async () => expect(await page.getByTestId('typing').textContent()).toBe('bob is typing…'), WAIT);
    await api(page, 'PUT', `${roomPath(roomId)}/typing/${encodeURIComponent(bob.userId)}`, { typing: false }, bob.token);
    await vi.waitFor(async () => expect(await page.getByTestId('typing').textContent()).toBe(''), WAIT);

    await api(
      page,
      'PUT',
      `${roomPath(roomId)}/send/m.room.message/b2`,
      { msgtype: 'm.text', body: '* hi from bob, edited', 'm.new_content': { msgtype: 'm.text', body: 'hi from bob, edited' }, 'm.relates_to': { rel_type: 'm.replace', event_id: sent.body.event_id } },
      bob.token,
    );
    await expectCount(messagesWith(page, 'hi from bob, edited'), 1);
    await expectCount(messagesWith(page, 'hi from bob'), 0);
    await page.locator(`[data-event-id="${sent.body.event_id}"]`).getByTestId('edited').waitFor(WAIT);

    // Alice has the room open: her client sent a read receipt, so Bob sees her count as read.
    const lastOfMine = await api(page, 'PUT', `${roomPath(roomId)}/send/m.room.message/b3`, { msgtype: 'm.text', body: 'read this' }, bob.token);
    await vi.waitFor(async () => {
      const r = await api(page, 'GET', '/_matrix/client/v3/sync?timeout=0', undefined, bob.token);
      const receipts = (r.body.rooms.join[roomId].ephemeral.events as { type: string; content: Record<string, any> }[]).find((e) => e.type === 'm.receipt');
      expect(receipts?.content[lastOfMine.body.event_id]?.['m.read']?.[me]).toBeDefined();
    }, WAIT);
    // …and Alice sees Bob's receipt on her own message.
    const mine = await page.locator('[data-testid=message].own').last().getAttribute('data-event-id');
    await api(page, 'POST', `${roomPath(roomId)}/receipt/m.read/${encodeURIComponent(mine!)}`, {}, bob.token);
    await page.locator(`[data-event-id="${mine}"]`).getByTestId('read-by').waitFor(WAIT);

    await api(page, 'PUT', `${roomPath(roomId)}/redact/${encodeURIComponent(lastOfMine.body.event_id)}/r1`, {}, bob.token);
    await page.locator(`[data-event-id="${lastOfMine.body.event_id}"]`).getByTestId('message-deleted').waitFor(WAIT);
    await expectCount(messagesWith(page, 'read this'), 0);
    await shots(page, 'room-two-people-desktop');
  });

  it('room settings: changing the topic updates the header', async () => {
    await page.getByTestId('open-settings').click();
    await page.getByTestId('settings-topic').fill('Tomatoes and beans');
    await page.getByTestId('settings-history').selectOption('joined');
    await page.getByTestId('settings-save').click();
    await page.locator('.room-topic').filter({ hasText: 'Tomatoes and beans' }).waitFor(WAIT);
    await page.getByTestId('notice').filter({ hasText: 'made future history visible to members, from when they joined' }).waitFor(WAIT);
    await shots(page, 'settings-desktop');
    await page.getByTestId('close-panel').click();
  });

  it('removes a member when my power allows it', async () => {
    await page.getByTestId('open-members').click();
    const row = page.locator('[data-testid=member]').filter({ hasText: 'bob' });
    await row.getByRole('button', { name: 'Remove' }).click();
    await row.getByRole('button', { name: 'Yes' }).click();
    await page.getByTestId('notice').filter({ hasText: 'Alice Smith removed bob' }).waitFor(WAIT);
    // My own row offers no actions on myself.
    expect(await page.locator(`[data-testid=member][data-user-id="${me}"] button`).count()).toBe(0);
    await page.getByTestId('close-panel').click();
  });

  it('an invite to a direct chat is on top of the list, and accepting opens it', async () => {
    const carol = await registerUser(page, 'carol');
    const dm = await api(page, 'POST', '/_matrix/client/v3/createRoom', { preset: 'trusted_private_chat', is_direct: true, invite: [me] }, carol.token);
    expect(dm.status).toBe(200);
    carolDm = { token: carol.token, roomId: dm.body.room_id };
    const invite = page.getByTestId('invite-item');
    await invite.waitFor(WAIT);
    const first = page.getByTestId('room-list').locator('li').first();
    expect(await first.getAttribute('data-room-id')).toBe(dm.body.room_id);
    await shots(page, 'invite-desktop');
    await invite.getByTestId('accept-invite').click();
    await page.getByTestId('room-name').filter({ hasText: 'carol' }).waitFor(WAIT);
    await page.getByTestId('composer').waitFor(WAIT);
  });

  it('starts a direct chat and joins a room by ID through the dialogs; bad input is explained', async () => {
    const dave = await registerUser(page, 'dave');
    await page.getByTestId('new-dm').click();
    await page.getByTestId('dm-user').fill('not-an-id');
    await page.getByTestId('dm-submit').click();
    await page.getByTestId('dm-dialog').getByRole('alert').filter({ hasText: 'Matrix ID' }).waitFor(WAIT);
    await page.getByTestId('dm-user').fill(dave.userId);
    await page.getByTestId('dm-submit').click();
    await page.getByTestId('room-name').filter({ hasText: 'dave' }).waitFor(WAIT);
    const daveSync = await api(page, 'GET', '/_matrix/client/v3/sync?timeout=0', undefined, dave.token);
    const inv = Object.values(daveSync.body.rooms.invite as Record<string, { invite_state: { events: any[] } }>)[0];
    expect(inv.invite_state.events.find((e) => e.type === 'm.room.member' && e.state_key === dave.userId).content.is_direct).toBe(true);

    const open = await api(page, 'POST', '/_matrix/client/v3/createRoom', { preset: 'public_chat', name: 'Dave’s corner' }, dave.token);
    await page.getByTestId('join-room').click();
    await page.getByTestId('join-target').fill('#nope:nowhere.invalid');
    await page.getByTestId('join-submit').click();
    await page.getByTestId('join-dialog').getByRole('alert').waitFor(WAIT);
    await page.getByTestId('join-target').fill(open.body.room_id);
    await page.getByTestId('join-submit').click();
    await page.getByTestId('room-name').filter({ hasText: 'Dave’s corner' }).waitFor(WAIT);

    // A message in another room: an unread badge there, and that room moves to the top of the list.
    await api(page, 'PUT', `${roomPath(carolDm.roomId)}/send/m.room.message/c1`, { msgtype: 'm.text', body: 'are you there?' }, carolDm.token);
    const carolItem = page.locator(`[data-testid=room-item][data-room-id="${carolDm.roomId}"]`);
    await vi.waitFor(async () => expect(await carolItem.getByTestId('unread-badge').textContent()).toBe('1'), WAIT);
    expect(await page.getByTestId('room-item').first().getAttribute('data-room-id')).toBe(carolDm.roomId);
    await shots(page, 'unread-desktop');
    await carolItem.click();
    await expectCount(messagesWith(page, 'are you there?'), 1);
    await expectCount(carolItem.getByTestId('unread-badge'), 0);
  });

  it('scrolls back through a long history with /messages', async () => {
    const token = await page.evaluate(() => (JSON.parse(localStorage.getItem('hearth.session.v1')!) as { accessToken: string }).accessToken);
    const long = await api(page, 'POST', '/_matrix/client/v3/createRoom', { name: 'Long story' }, token);
    for (let i = 0; i < 100; i++) {
      const r = await api(page, 'PUT', `${roomPath(long.body.room_id)}/send/m.room.message/long${i}`, { msgtype: 'm.text', body: `chapter ${i}` }, token);
      expect(r.status).toBe(200);
    }
    // A fresh start: the initial sync brings only the newest page.
    await page.goto(`${app.url}/#/room/${encodeURIComponent(long.body.room_id)}`);
    await page.reload();
    await expectCount(messagesWith(page, 'chapter 99'), 1);
    expect(await messagesWith(page, 'chapter 0').count()).toBe(0);
    // Scroll to the top until the start of the room shows.
    await vi.waitFor(async () => {
      await page.getByTestId('timeline').evaluate((el) => (el.scrollTop = 0));
      expect(await page.getByText('This is the beginning of the room.').count()).toBe(1);
    }, WAIT);
    const bodies = await page.getByTestId('message-body').allTextContents();
    expect(bodies).toEqual(Array.from({ length: 100 }, (_, i) => `chapter ${i}`));
  });

  it('account: profile, devices and status', async () => {
    await page.getByTestId('account-link').click();
    await page.getByTestId('account-view').waitFor(WAIT);
    expect(await page.getByTestId('my-matrix-id').textContent()).toBe(me);
    await page.getByTestId('devices').locator('li').first().waitFor(WAIT);
    // The page's network (src/browser/p2p) is connected to the Node peer that served it, over WebSockets.
    await vi.waitFor(async () => expect(await page.getByTestId('peers').textContent()).toContain('websockets'), WAIT);
    await vi.waitFor(async () => expect(await page.getByTestId('storage-used').textContent()).toMatch(/\d.* used/), WAIT);
    await page.getByTestId('displayname-input').fill('Alice S.');
    await page.getByTestId('displayname-save').click();
    await page.locator('.me-name').filter({ hasText: 'Alice S.' }).waitFor(WAIT);
    await shots(page, 'account-desktop');
  });
});

describe('the chat client on a phone', () => {
  it('shows the room list and a room as separate screens, in dark mode too', async () => {
    const ctx = await newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, colorScheme: 'dark' });
    const page = await ctx.newPage();
    await page.goto(app.url);
    await page.getByTestId('first-run-name').waitFor(WAIT);
    await shot(page, 'first-run-phone-dark');
    await firstRun(page, 'Zoë');
    await createRoom(page, 'Book club', 'One chapter a week');
    // On a phone the room replaces the list.
    expect(await page.getByTestId('room-list').isVisible()).toBe(false);
    for (const m of ['Who has finished chapter 3?', 'Me! The ending was a surprise 😮', 'No spoilers please']) await send(page, m);
    await expectCount(page.locator('[data-testid=message][data-status=sent]'), 3);
    await shot(page, 'room-phone-dark');
    await page.emulateMedia({ colorScheme: 'light' });
    await shot(page, 'room-phone-light');
    await page.getByTestId('open-members').click();
    await page.getByTestId('member-panel').waitFor(WAIT);
    await shot(page, 'members-phone-light');
    await page.getByTestId('close-panel').click();
    await page.getByTestId('back').click();
    await page.getByTestId('room-list').waitFor(WAIT);
    expect(await page.getByTestId('room-view').count()).toBe(0);
    await shot(page, 'room-list-phone-light');
    await page.emulateMedia({ colorScheme: 'dark' });
    await shot(page, 'room-list-phone-dark');
  });
});
