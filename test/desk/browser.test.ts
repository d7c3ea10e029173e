/**
 * The front desk in a real browser: Debian's Chromium, headless, driven by playwright-core (never a
 * downloaded browser), on a phone-sized screen (390×844, touch). Over the real SQLite store, with
 * two clinics: Oak Hill's staff sign in with Oak Hill's token and see only Oak Hill's follow-ups,
 * the emergency on top; they tap "Mark in progress", add a note (their name remembered), and a
 * follow-up stored and published while the page is open appears without a reload.
 *
 * `UPDATE_DESK_SCREENSHOT=1` saves the screenshot to docs/desk.png (else to the temp dir).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FollowUpInput } from '../../src/store/types.js';
import { CHROMIUM, CHROMIUM_ARGS, describeInChromium } from '../support/chromium.js';
import { MINUTE, OAK, RIVER, TOKENS, followUp, recordingSid, startDesk, summary, tokenAccess, webhookDelivery, type DeskHarness } from './kit.js';

const PHONE = { width: 390, height: 844 };

/** The page's globals the tests read (tsconfig has no DOM lib; these casts vanish when compiled). */
interface PageElement { textContent: string | null; value: string; querySelector(selector: string): PageElement | null }
interface Win {
  __vetlineDesk: { ready: boolean; connected: boolean; loads: number; events: number; lastError: string | null };
  __marker?: string;
  innerWidth: number;
  document: { documentElement: { scrollWidth: number }; body: { scrollWidth: number }; querySelector(selector: string): PageElement | null };
  localStorage: { getItem(key: string): string | null };
}

describeInChromium('the front desk in headless Chromium, on a phone', () => {
  let desk: DeskHarness;
  let browser: Browser;
  let url: string;
  let dir: string;
  let emergency: FollowUpInput;
  let appt: FollowUpInput;
  let message: FollowUpInput;
  let river: FollowUpInput;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vetline-desk-'));
    desk = await startDesk({
      access: tokenAccess(),
      fetchRecording: () => Promise.resolve({ body: Buffer.alloc(64), contentType: 'audio/mpeg' }),
    });
    const now = Date.now();
    emergency = followUp({
      clinicId: OAK, type: 'emergency', urgency: 'emergency', createdAt: now - 40 * MINUTE, callerNumber: '+15557650202',
      callerName: 'Jordan Reyes', petName: 'Biscuit', petSpecies: 'cat', reason: 'Seizure, still shaking', preferredTime: null,
      emergency: { trigger: 'speech', detail: 'seizure', script: 'emergency', sentTo: 'emergencyLine', connected: false },
    });
    appt = followUp({ clinicId: OAK, createdAt: now - 12 * MINUTE, callerName: 'Ana García', petName: 'Bella', petSpecies: 'dog', urgency: 'soon' });
    message = followUp({
      clinicId: OAK, type: 'message', createdAt: now - 3 * MINUTE, callerName: 'Priya Shah', petName: null, petSpecies: null, reason: null, preferredTime: null,
      message: 'Please call me about the invoice from last week, I think it was charged twice.', recipient: 'Dr. Patel', callerNumber: null,
    });
    river = followUp({ clinicId: RIVER, createdAt: now - MINUTE, petName: 'Whiskers', callerName: 'Someone Else' });
    const failing = webhookDelivery(appt);
    await desk.store.recordFollowUp(emergency, []);
    await desk.store.recordFollowUp(appt, [failing]);
    await desk.store.recordFollowUp(message, []);
    await desk.store.recordFollowUp(river, []);
    await desk.store.markAttemptFailed(failing.id, 'HTTP 500 Internal Server Error (gave up after 24 h)', null, now);
    await desk.store.finishCall(
      summary(emergency, {
        outcome: 'emergency',
        summary: 'Emergency: Biscuit (cat) is having a seizure. The transfer to the emergency line did not connect; call back at once.',
        transcript: [
          { role: 'agent', text: 'Oak Hill Animal Clinic, how can I help?' },
          { role: 'caller', text: 'My cat Biscuit is having a seizure <b>right now</b>' },
          { role: 'agent', text: 'I am connecting you to our emergency line now.' },
        ],
        recordings: [{ recordingSid: recordingSid(), url: null, durationSeconds: 74 }],
      }),
      [],
      now,
    );
    await desk.store.finishCall(summary(appt, { summary: 'Ana would like a check-up for Bella (limping), Thursday morning if possible.' }), [], now);
    url = await desk.app.listen({ port: 0, host: '127.0.0.1' });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await desk?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const card = (page: Page, id: string) => page.locator(`article[data-id="${id}"]`);

  async function signIn(): Promise<{ page: Page; errors: string[] }> {
    const context = await browser.newContext({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    page.on('console', (m) => {
      // The sign-in form itself is answered 401 (like the inspector's); Chromium reports that.
      if (m.type() === 'error' && !m.text().includes('status of 401')) errors.push(m.text());
    });
    const login = await page.goto(`${url}/desk`);
    expect(login?.status()).toBe(401);
    await page.fill('#token', TOKENS[OAK]);
    await page.tap('button[type="submit"]');
    await page.waitForFunction(() => (globalThis as unknown as Win).__vetlineDesk?.ready === true && (globalThis as unknown as Win).__vetlineDesk.connected);
    return { page, errors };
  }

  it('signs in with the clinic token and works the inbox on a phone: emergency first, mark in progress, add a note, live arrivals', async () => {
    const { page, errors } = await signIn();
    expect(await page.locator('#scope-name').textContent()).toBe('Oak Hill Animal Clinic');
    expect(await page.locator('#open-banner').count()).toBe(0);

    // Only Oak Hill's follow-ups, the open emergency on top, then newest first.
    const order = await page.locator('article.dk-card').evaluateAll((cards) => cards.map((c) => (c as unknown as { dataset: { id: string } }).dataset.id));
    expect(order).toEqual([emergency.id, message.id, appt.id]);
    expect(await card(page, river.id).count()).toBe(0);
    expect(await page.locator('main').textContent()).not.toContain('Whiskers');
    await expect.poll(() => card(page, emergency.id).getAttribute('class')).toContain('dk-emergency');
    const top = card(page, emergency.id);
    expect(await top.locator('.dk-type-emergency').textContent()).toBe('Emergency');
    expect(await top.locator('.dk-alert').textContent()).toContain('did NOT connect');
    expect(await top.locator('[data-role="callback"]').getAttribute('href')).toBe('tel:+15557650202');
    expect(await top.locator('[data-role="summary"]').textContent()).toContain('Biscuit (cat) is having a seizure');
    expect(await top.locator('.dk-pet').textContent()).toBe('Biscuit (cat)');
    expect(await card(page, appt.id).locator('[data-role="delivery"]').textContent()).toBe('Delivery failed (webhook): HTTP 500 Internal Server Error (gave up after 24 h)');
    expect(await card(page, message.id).locator('.dk-nonumber').textContent()).toContain('No callback number');

    // A phone screen: nothing wider than the viewport, tap targets at least 44 px tall.
    expect(await page.evaluate(() => Math.max((globalThis as unknown as Win).document.documentElement.scrollWidth, (globalThis as unknown as Win).document.body.scrollWidth))).toBeLessThanOrEqual(PHONE.width);
    for (const target of await page.locator('article button:visible, article a.dk-btn:visible, .dk-seg button').all()) {
      const box = await target.boundingBox();
      expect(box!.height, (await target.textContent()) ?? '').toBeGreaterThanOrEqual(44);
    }

    const shot = process.env.UPDATE_DESK_SCREENSHOT ? fileURLToPath(new URL('../../docs/desk.png', import.meta.url)) : join(dir, 'desk.png');
    await page.screenshot({ path: shot });

    // The transcript opens on demand and shows what was said as text (markup in it stays text).
    await top.locator('details.dk-details > summary').tap();
    const transcript = top.locator('[data-role="transcript"]');
    await transcript.waitFor();
    expect(await transcript.textContent()).toContain('My cat Biscuit is having a seizure <b>right now</b>');
    expect(await transcript.locator('b').count()).toBe(0);
    expect(await top.locator('[data-role="recording"]').getAttribute('href')).toMatch(/^\/desk\/api\/recordings\/CA\w+\/RE\w+$/);


    // Staff name, remembered for status changes and notes.
    await page.locator('#more > summary').tap();
    await page.fill('#staff-name', 'Sam Lee');
    await page.locator('#staff-name').dispatchEvent('change');
    expect(await page.evaluate(() => (globalThis as unknown as Win).localStorage.getItem('vetline.desk.name'))).toBe('Sam Lee');
    await page.locator('#more > summary').tap();

    // Mark in progress: persisted in the store, shown on the card.
    await page.evaluate(() => ((globalThis as unknown as Win).__marker = 'no reload'));
    await card(page, appt.id).locator('button[data-act="in_progress"]').tap();
    await expect.poll(() => card(page, appt.id).locator('[data-role="status"]').textContent()).toBe('In progress');
    expect(await desk.store.getFollowUp(appt.id)).toMatchObject({ status: 'in_progress', handledBy: 'Sam Lee' });
    expect(await card(page, appt.id).locator('button[data-act="in_progress"]').count()).toBe(0);

    // Add a note: the name is filled in from last time.
    await card(page, appt.id).locator('button[data-act="note"]').tap();
    const form = card(page, appt.id).locator('form.dk-note-form');
    expect(await form.locator('input').inputValue()).toBe('Sam Lee');
    await form.locator('textarea').fill('Left a voicemail, will try again after 3 pm.');
    await form.locator('button[data-act="save-note"]').tap();
    await card(page, appt.id).locator('.dk-notes li').waitFor();
    expect(await card(page, appt.id).locator('.dk-notes').textContent()).toContain('Left a voicemail, will try again after 3 pm.');
    expect(await form.isHidden()).toBe(true);
    const stored = await desk.store.getFollowUp(appt.id);
    expect(stored?.notes.map((n) => [n.by, n.text])).toEqual([['Sam Lee', 'Left a voicemail, will try again after 3 pm.']]);

    // A call ends while the page is open: the new follow-up appears without a reload; another
    // clinic's never does.
    const arrived = followUp({ clinicId: OAK, type: 'refill_request', createdAt: Date.now(), petName: 'Pepper', petSpecies: 'dog', reason: 'carprofen refill', callerNumber: '+15557650404' });
    const elsewhere = followUp({ clinicId: RIVER, createdAt: Date.now(), petName: 'Shadow' });
    await desk.store.recordFollowUp(elsewhere, []);
    desk.events.publish(RIVER);
    await desk.store.recordFollowUp(arrived, []);
    desk.events.publish(OAK);
    await card(page, arrived.id).waitFor({ timeout: 5_000 });
    expect(await card(page, arrived.id).locator('.dk-type-refill_request').textContent()).toBe('Refill request');
    expect(await card(page, elsewhere.id).count()).toBe(0);
    expect(await page.evaluate(() => (globalThis as unknown as Win).__marker)).toBe('no reload');
    const after = await page.locator('article.dk-card').evaluateAll((cards) => cards.map((c) => (c as unknown as { dataset: { id: string } }).dataset.id));
    expect(after).toEqual([emergency.id, arrived.id, message.id, appt.id]); // still emergency first, then newest

    // Done: it leaves the open list, and is under "Done".
    await card(page, message.id).locator('button[data-act="done"]').tap();
    await card(page, message.id).waitFor({ state: 'detached' });
    expect((await desk.store.getFollowUp(message.id))?.status).toBe('done');
    await page.locator('#status-filter button[data-status="done"]').tap();
    await card(page, message.id).waitFor();
    expect(await page.locator('article.dk-card').count()).toBe(1);

    expect(await page.evaluate(() => Math.max((globalThis as unknown as Win).document.documentElement.scrollWidth, (globalThis as unknown as Win).document.body.scrollWidth))).toBeLessThanOrEqual(PHONE.width);
    expect(errors).toEqual([]);
    await page.context().close();
  }, 60_000);

  it('signing out returns to the sign-in form', async () => {
    const { page, errors } = await signIn();
    await page.tap('#logout button');
    await page.waitForSelector('#token');
    expect(await page.evaluate(() => (globalThis as unknown as Win).document.querySelector('.dk-login-form') !== null)).toBe(true);
    expect(errors).toEqual([]);
    await page.context().close();
  }, 30_000);
});
