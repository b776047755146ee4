import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Locator, Page } from '@playwright/test';
import { expect, signInAsAdmin, test } from './fixtures';

// Knowledge & training against the real product: the bootstrap jobs `qig up` queues on a fresh
// data directory (playwright.config.ts: QIG_BOOTSTRAP=1, a small corpus and 200 steps) train on
// this machine's CPU or GPU while the page watches them, then an uploaded file trains its kernels.

const screenshots = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  'test-results',
  'screenshots',
);

const ROLE = '(HEART|PERCEPTION|MEMORY|ACTION|PREDICTION|ETHICS|META|INTEGRATION)';

/** A few paragraphs a person might upload: plain prose, so it routes by content. */
const KNOWLEDGE = [
  'Memory is the faculty by which the mind stores and remembers information.',
  'Recall brings back what was stored; forgetting is the loss of what was once remembered.',
  'Episodic memory holds events of a life, semantic memory holds facts and meanings.',
  'Rehearsal and sleep consolidate memories, moving them from short-term to long-term storage.',
]
  .join('\n\n')
  .repeat(6);

function jobRow(page: Page, kind: string): Locator {
  return page.getByTestId('queue-panel').getByRole('listitem').filter({ hasText: kind }).first();
}

async function percentOf(row: Locator): Promise<number> {
  const text = (await row.getByTestId('job-percent').textContent()) ?? '';
  return Number.parseFloat(text);
}

/**
 * Polls a job row until it completes, recording the percentages it showed on the way; fails at
 * once if the job fails or is cancelled.
 */
async function watchUntilCompleted(row: Locator, timeout: number): Promise<number[]> {
  const seen: number[] = [];
  await expect
    .poll(
      async () => {
        const status = (await row.getByTestId('job-status').textContent()) ?? '';
        if (status === 'failed' || status === 'cancelled') {
          const why = await row.textContent();
          throw new Error(`the job ${status}: ${why}`);
        }
        const percent = await percentOf(row);
        if (seen.at(-1) !== percent) seen.push(percent);
        return status;
      },
      { timeout, intervals: [250] },
    )
    .toBe('completed');
  return seen;
}

test('the bootstrap trains live, then an uploaded file is routed and trains its kernels', async ({
  page,
}) => {
  test.setTimeout(600_000);
  await signInAsAdmin(page);
  await page.getByRole('link', { name: 'Knowledge & training' }).click();
  await expect(page.getByRole('heading', { name: 'Knowledge & training' })).toBeVisible();
  await expect(page.getByRole('heading', { name: 'Fine-tuning queue' })).toBeVisible();

  // The bootstrap: a coordizer job, then a pretrain job, both queued by `qig up` itself.
  const coordizer = jobRow(page, 'Coordizer');
  const pretrain = jobRow(page, 'Pretrain (trunk)');
  await expect(coordizer).toBeVisible({ timeout: 30_000 });
  await expect(pretrain).toBeVisible();
  await expect(pretrain.getByRole('progressbar', { name: /progress$/ })).toBeVisible();

  // On a fast machine the small bootstrap may be over before the page opens; the adapter job
  // below is watched live either way.
  const doneOnArrival = (await pretrain.getByTestId('job-status').textContent()) === 'completed';
  const pretrainSeen = await watchUntilCompleted(pretrain, 300_000);
  await expect(pretrain.getByTestId('job-percent')).toHaveText('100%');
  await expect(pretrain.getByTestId('job-steps')).toHaveText(/^step (\d+) \/ \1$/);
  await expect(coordizer.getByTestId('job-status')).toHaveText('completed');
  // When it was watched while it ran, the bar showed a value between empty and full.
  if (!doneOnArrival) {
    expect(
      pretrainSeen.some((p) => p > 0 && p < 100),
      `pretrain percentages seen: ${pretrainSeen}`,
    ).toBe(true);
  }
  await page.screenshot({ path: path.join(screenshots, 'knowledge-bootstrap.png'), fullPage: true });

  // Upload a text file with "train" checked.
  await page.getByLabel('Files to upload').setInputFiles({
    name: 'memory-notes.txt',
    mimeType: 'text/plain',
    // Unique bytes each run: a retry on the same server would otherwise be a duplicate.
    buffer: Buffer.from(`${KNOWLEDGE}\n\nNotes taken on ${new Date().toISOString()}.`),
  });
  await expect(page.getByRole('list', { name: 'Chosen files' })).toContainText('memory-notes.txt');
  await page.getByLabel('Train the routed kernels on it now').check();
  await page.getByRole('button', { name: 'Upload 1 file' }).click();

  const result = page.getByRole('listitem', { name: 'Result for memory-notes.txt' });
  await expect(result.getByText('Stored', { exact: true })).toBeVisible({ timeout: 60_000 });
  const card = result.getByRole('article');
  await expect(card.getByTestId('upload-status')).toHaveText('ready');
  expect(Number(await card.getByTestId('upload-chunks').textContent())).toBeGreaterThan(0);
  expect(Number(await card.getByTestId('upload-tokens').textContent())).toBeGreaterThan(0);
  const routes = card.getByTestId('routed-kernels').locator('tbody tr');
  expect(await routes.count()).toBeGreaterThan(0);
  for (const route of await routes.all()) {
    await expect(route).toHaveText(new RegExp(`^#\\d+${ROLE}\\d+\\.\\d{4}$`));
  }
  await card.getByText(/Preview of the extracted text/).click();
  await expect(card.locator('pre')).toContainText('Memory is the faculty');

  // The adapter job it queued trains those kernels, live: its bar advances. (It has the
  // server's default length, 500 steps per kernel, several minutes on a CPU.)
  const link = result.getByRole('link', { name: /^adapter job #\d+$/ });
  const trainJob = Number(((await link.textContent()) ?? '').replace(/\D+/g, ''));
  const trained = page.getByRole('listitem', { name: `Job ${trainJob}` });
  await expect(trained).toBeVisible();
  const routed = (await routes.locator('td:first-child').allTextContents()).map((t) => t.replace('#', ''));
  for (const kernel of routed) await expect(trained.getByTestId('job-kernels')).toContainText(kernel);
  await expect(trained.getByTestId('job-status')).toHaveText('running', { timeout: 60_000 });
  await expect.poll(() => percentOf(trained), { timeout: 120_000 }).toBeGreaterThan(0);
  const before = await percentOf(trained);
  await expect.poll(() => percentOf(trained), { timeout: 120_000 }).toBeGreaterThan(before);
  await page.screenshot({ path: path.join(screenshots, 'knowledge-upload.png'), fullPage: true });

  // The admin pauses it (the runner stops at its next step), resumes it, then cancels it.
  await trained.getByRole('button', { name: 'Pause' }).click();
  await expect(trained.getByTestId('job-status')).toHaveText('paused', { timeout: 30_000 });
  await expect(trained).toContainText('paused by an admin');
  await trained.getByRole('button', { name: 'Resume' }).click();
  await expect(trained.getByTestId('job-status')).toHaveText('running', { timeout: 60_000 });
  page.once('dialog', (dialog) => void dialog.accept());
  await trained.getByRole('button', { name: 'Cancel' }).click();
  await expect(trained.getByTestId('job-status')).toHaveText('cancelled', { timeout: 30_000 });

  // A short adapter job on the same upload, queued from the form, trains to the end.
  const uploadName = (await card.getAttribute('aria-label')) ?? '';
  const uploadId = /^Upload (\d+):/.exec(uploadName)?.[1];
  expect(uploadId, uploadName).toBeTruthy();
  const form = page.getByRole('form', { name: 'Queue a job' });
  await form.getByLabel('Datasets (uploads)').selectOption(uploadId!);
  await form.getByLabel('Steps').fill('15');
  await form.getByRole('button', { name: 'Queue job' }).click();
  const queued = form.getByRole('status');
  await expect(queued).toHaveText(/^Queued job #\d+\.$/);
  const shortJob = Number(((await queued.textContent()) ?? '').replace(/\D+/g, ''));
  const adapter = page.getByRole('listitem', { name: `Job ${shortJob}` });
  for (const kernel of routed) await expect(adapter.getByTestId('job-kernels')).toContainText(kernel);
  const adapterSeen = await watchUntilCompleted(adapter, 300_000);
  await expect(adapter.getByTestId('job-percent')).toHaveText('100%');
  await expect(adapter.getByTestId('job-steps')).toHaveText(
    `step ${15 * routed.length} / ${15 * routed.length}`,
  );
  expect(adapterSeen.length, `adapter percentages seen: ${adapterSeen}`).toBeGreaterThan(1);

  // A broken file, dropped on the zone: the error names the line; nothing is stored.
  const dataTransfer = await page.evaluateHandle(() => {
    const transfer = new DataTransfer();
    transfer.items.add(
      new File(['{"text": "a fine first record"}\n{"text": broken\n'], 'broken.jsonl', {
        type: 'application/jsonl',
      }),
    );
    return transfer;
  });
  await page.getByTestId('dropzone').dispatchEvent('drop', { dataTransfer });
  await page.getByRole('button', { name: 'Upload 1 file' }).click();
  const failed = page.getByRole('listitem', { name: 'Result for broken.jsonl' });
  await expect(failed.getByRole('alert')).toContainText(/line 2/);
  await expect(page.getByTestId('recent-uploads')).not.toContainText('broken.jsonl');
  await page.screenshot({ path: path.join(screenshots, 'knowledge-error.png'), fullPage: true });
});
