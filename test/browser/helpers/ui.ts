/**
 * Helpers that drive the chat client (src/client) through its UI only, shared by the UI tests
 * (ui.test.ts, federation-ui.test.ts). Selectors are the client's `data-testid`s.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Locator, Page } from 'playwright-core';
import { expect, vi } from 'vitest';
import { REPO_ROOT } from './browser.js';

export const SHOTS = join(REPO_ROOT, 'artifacts/screenshots');

export interface Wait {
  timeout: number;
  interval: number;
}

/** UI state of the page's own homeserver settles fast; federated tests pass a longer wait. */
export const UI_WAIT: Wait = { timeout: 20_000, interval: 100 };

/** A screenshot to artifacts/screenshots/<name>.png, once the fonts are in. */
export async function shot(page: Page, name: string): Promise<void> {
  mkdirSync(SHOTS, { recursive: true });
  await page.evaluate(() => document.fonts.ready);
  await page.screenshot({ path: join(SHOTS, `${name}.png`) });
}

/** First run through the UI: name → account → Matrix ID shown; resolves with that ID. */
export async function firstRun(page: Page, url: string, name: string, wait: Wait = UI_WAIT): Promise<string> {
  await page.goto(url);
  await page.getByTestId('first-run-name').waitFor(wait);
  await page.getByTestId('first-run-name').fill(name);
  await page.getByTestId('first-run-submit').click();
  const id = page.getByTestId('sidebar-matrix-id');
  await id.waitFor(wait);
  return (await id.textContent())!;
}

/** Creates a room through the dialog and waits for it to open; resolves with its room ID (from the URL). */
export async function createRoom(page: Page, name: string, topic = '', wait: Wait = UI_WAIT): Promise<string> {
  await page.getByTestId('new-room').click();
  await page.getByTestId('create-room-name').fill(name);
  if (topic) await page.getByTestId('create-room-topic').fill(topic);
  await page.getByTestId('create-room-submit').click();
  await page.getByTestId('room-name').filter({ hasText: name }).waitFor(wait);
  return decodeURIComponent(new URL(page.url()).hash.replace('#/room/', ''));
}

/** Types `text` in the composer and sends it with Enter. */
export async function send(page: Page, text: string): Promise<void> {
  const composer = page.getByTestId('composer');
  await composer.fill(text);
  await composer.press('Enter');
}

/** Messages in the open timeline whose text is exactly `text`. */
export function messagesWith(page: Page, text: string): Locator {
  return page.getByTestId('timeline').getByTestId('message-body').filter({ hasText: new RegExp(`^${text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`) });
}

/** Waits until `loc` matches exactly `n` elements. */
export async function expectCount(loc: Locator, n: number, wait: Wait = UI_WAIT): Promise<void> {
  await vi.waitFor(async () => expect(await loc.count()).toBe(n), wait);
}
