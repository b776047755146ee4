import type { Page } from '@playwright/test';
import { expect, signInAsAdmin, test } from './fixtures';

// The chat against the real product: the e2e server's small bootstrap training (see
// playwright.config.ts) must first produce a checkpoint; until then the page shows the server's
// "no trained model yet: … (progress)" and a Try again button, which this test uses.

const BOOTSTRAP_WAIT_MS = 300_000;

/** Sends the composer's message, pressing "Try again" while the model is still being trained. */
async function sendWhenReady(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Send' }).click();
  const deadline = Date.now() + BOOTSTRAP_WAIT_MS;
  const notReady = page.getByRole('alert').filter({ hasText: 'The model is not ready yet.' });
  const streaming = page.getByTestId('streaming-answer');
  const answered = page.getByTestId('answer-metrics');
  for (;;) {
    await expect(notReady.or(streaming).or(answered).first()).toBeVisible({ timeout: 30_000 });
    if ((await streaming.isVisible()) || (await answered.count()) > 0) return;
    await expect(notReady).toContainText('no trained model yet');
    if (Date.now() > deadline) throw new Error(`no checkpoint after ${BOOTSTRAP_WAIT_MS} ms`);
    await page.waitForTimeout(3_000);
    await page.getByRole('button', { name: 'Try again' }).click();
  }
}

/** Records the streaming answer's text each time it changes, in the page itself. */
async function watchStreamingText(page: Page): Promise<void> {
  await page.evaluate(() => {
    const seen: string[] = [];
    (window as unknown as { seen: string[] }).seen = seen;
    new MutationObserver(() => {
      const answer = document.querySelector('[data-testid="streaming-answer"] .chat-markdown');
      const text = answer?.textContent ?? '';
      if (text && text !== seen[seen.length - 1]) seen.push(text);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
}

// The bootstrap model is barely trained: it often ends an answer after a token or two (sampled
// end of text). Streaming and Stop need an answer that lasts, so each is tried on a few answers.
const ATTEMPTS = 10;

const seenTexts = (page: Page) =>
  page.evaluate(() => (window as unknown as { seen: string[] }).seen.splice(0));

test('a chat streams an answer with its measures, keeps feedback and stops on demand', async ({ page }) => {
  test.setTimeout(BOOTSTRAP_WAIT_MS + 240_000);
  // The page's chat requests get the `ignore_eos` option (docs/inference.md): the barely trained
  // bootstrap model would often draw end of text after a token or two, too soon to watch an
  // answer stream or to press Stop; with it, every answer runs to its "Answer length".
  await page.route('**/api/v1/chat/', async (route) => {
    const body = route.request().postDataJSON() as { options?: Record<string, unknown> };
    body.options = { ...body.options, ignore_eos: true };
    await route.continue({ postData: JSON.stringify(body) });
  });
  await signInAsAdmin(page);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Chat' }).click();
  await expect(page.getByRole('heading', { name: 'New chat' })).toBeVisible();
  await expect(page.getByText('No conversations yet.')).toBeVisible();

  const message = page.getByLabel('Message');
  const metrics = page.getByTestId('answer-metrics');
  await message.fill('Tell me about memory and geometry');
  await page.getByLabel('Answer length (tokens)').fill('96');
  await watchStreamingText(page);
  await sendWhenReady(page);

  // The answer arrives token by token (its text grows while it streams), then its measures.
  let grew: string[] = [];
  for (let answers = 1; answers <= ATTEMPTS; answers += 1) {
    if (answers > 1) {
      await message.fill(`Tell me more about memory, part ${answers}`);
      await page.getByRole('button', { name: 'Send' }).click();
    }
    await expect(metrics).toHaveCount(answers, { timeout: 60_000 });
    const seen = await seenTexts(page);
    if (seen.length >= 2) {
      grew = seen;
      break;
    }
  }
  expect(grew.length, 'an answer observed growing while it streamed').toBeGreaterThanOrEqual(2);
  // Rendered Markdown may re-flow earlier text (a list, closed emphasis), so compare lengths.
  expect(grew[grew.length - 1]!.length).toBeGreaterThan(grew[0]!.length);
  const last = metrics.last();
  await expect(last).toContainText(/Kernel\s*\d+ [A-Z]+/);
  await expect(last).toContainText(/Distance\s*\d+\.\d{3}/);
  await expect(last).toContainText(/Φ\s*-?\d+\.\d{3}/);
  await expect(last).toContainText(/κ\s*-?\d+\.\d/);
  await expect(last).toContainText(/TTFT\s*\d+ ms/);
  await expect(last).toContainText(/Speed\s*\d+\.\d tok\/s/);
  await expect(page).toHaveURL(/\/chat\/\d+$/);
  const sidebar = page.getByRole('navigation', { name: 'Conversations' });
  await expect(
    sidebar.getByRole('button', { name: 'Tell me about memory and geometry', exact: true }),
  ).toBeVisible();

  // Thumbs up is saved on the interaction: still pressed after a reload.
  const saved = page.waitForResponse((r) => r.url().includes('/feedback/') && r.status() === 200);
  await page.getByRole('button', { name: 'Good answer' }).last().click();
  await saved;
  const answers = await metrics.count();
  await page.reload();
  await expect(metrics).toHaveCount(answers);
  await expect(page.getByRole('button', { name: 'Good answer' }).last()).toHaveAttribute(
    'aria-pressed',
    'true',
  );
  await expect(page.getByRole('button', { name: 'Bad answer' }).last()).toHaveAttribute(
    'aria-pressed',
    'false',
  );

  // A long answer stops when asked: the partial answer is kept, marked stopped.
  await page.getByLabel('Answer length (tokens)').fill('4000');
  const streaming = page.getByTestId('streaming-answer');
  let stopped = false;
  for (let attempt = 1; attempt <= ATTEMPTS && !stopped; attempt += 1) {
    const before = await metrics.count();
    await message.fill(`Go on and on about basins (${attempt})`);
    await page.getByRole('button', { name: 'Send' }).click();
    const finished = metrics.nth(before);
    await expect(streaming.locator('.chat-markdown').or(finished).first()).toBeVisible({ timeout: 60_000 });
    try {
      await page.getByRole('button', { name: 'Stop' }).click({ timeout: 1_000 });
    } catch {
      // the answer ended before Stop could be pressed: try a longer one
    }
    await expect(metrics).toHaveCount(before + 1, { timeout: 15_000 });
    stopped = /Status\s*stopped/.test((await finished.textContent()) ?? '');
  }
  expect(stopped, 'an answer stopped by the Stop button').toBe(true);
  await expect(page.getByRole('button', { name: 'Send' })).toBeVisible();
});
