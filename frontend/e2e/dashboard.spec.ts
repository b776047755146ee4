import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { APIResponse, Page } from '@playwright/test';
import { expect, signInAsAdmin, test } from './fixtures';

// The dashboard against the real product: the e2e server runs a small bootstrap (coordizer, then
// a `tiny` pretrain) while these tests run, so Φ and κ are measured live. Run with:
//   npx playwright test e2e/dashboard.spec.ts   (see docs/dashboard.md)

const results = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'test-results');
const screenshots = path.join(results, 'screenshots');

/**
 * While 240 kernels, the moving avatar and 1 Hz telemetry are on screen the dashboard keeps at
 * least FPS_FLOOR frames a second, and RELATIVE_FLOOR of what the same browser manages on a still
 * page with only the shell. The test machine renders in software on shared CPUs while the server
 * trains beside it, so the floors are modest; the measured rates go to test-results/ (see
 * docs/dashboard.md, "Frame rate").
 */
const FPS_FLOOR = 20;
const RELATIVE_FLOOR = 0.35;

async function openDashboard(page: Page): Promise<void> {
  await signInAsAdmin(page);
  await expect(page.getByRole('heading', { name: 'Kernels', level: 2 })).toBeVisible();
  await expect(page.getByTestId('telemetry-state')).toHaveText('Live');
}

/** POST as the signed-in page, with Django's CSRF token from the page's cookie. */
async function post(page: Page, url: string, data: unknown): Promise<APIResponse> {
  const cookies = await page.context().cookies();
  const csrf = cookies.find((c) => c.name === 'csrftoken')?.value ?? '';
  return page.request.post(url, { data, headers: { 'X-CSRFToken': csrf } });
}

interface Job {
  id: number;
  kind: string;
  status: string;
}

async function jobs(page: Page): Promise<Job[]> {
  const response = await page.request.get('/api/v1/jobs/');
  expect(response.status()).toBe(200);
  return ((await response.json()) as { results: Job[] }).results;
}

test('the kernel grid draws all 240 kernels at their E8 roots, with a role filter', async ({ page }) => {
  await openDashboard(page);
  const cells = page.getByTestId('kernel-cell');
  await expect(cells).toHaveCount(240);
  const counts = await Promise.all(
    ['active', 'standby', 'learning'].map(async (status) =>
      Number(((await page.getByTestId(`count-${status}`).textContent()) ?? '').match(/\d+/)?.[0]),
    ),
  );
  expect(counts.reduce((a, b) => a + b, 0)).toBe(240);

  // The filter: one role leaves only its kernels bright.
  const hearts = await page.locator('[data-testid="kernel-cell"][data-role="HEART"]').count();
  expect(hearts).toBeGreaterThan(0);
  await page.getByRole('button', { name: 'HEART', exact: true }).click();
  await expect(page.locator('[data-testid="kernel-cell"]:not(.kcell--dimmed)')).toHaveCount(hearts);
  await expect(
    page.locator('[data-testid="kernel-cell"]:not(.kcell--dimmed):not([data-role="HEART"])'),
  ).toHaveCount(0);
  await page.getByRole('button', { name: 'All roles', exact: true }).click();

  // Hover shows a kernel's details.
  await cells.nth(100).hover();
  await expect(page.getByTestId('kernel-details')).toContainText('Kernel 100');
  await expect(page.getByTestId('kernel-details')).toContainText('Anchor drift');
});

test('keyboard: Tab through the role filter into the grid, arrows move, Enter selects', async ({ page }) => {
  await openDashboard(page);
  await expect(page.getByTestId('kernel-cell')).toHaveCount(240);
  await page.getByRole('button', { name: 'All roles', exact: true }).focus();
  for (let i = 0; i < 8; i += 1) await page.keyboard.press('Tab');
  await expect(page.getByRole('button', { name: 'INTEGRATION', exact: true })).toBeFocused();
  await page.keyboard.press('Tab');
  const focused = () => page.evaluate(() => document.activeElement?.getAttribute('data-index') ?? null);
  expect(await focused()).toBe('0');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  expect(await focused()).toBe('2');
  await page.keyboard.press('Enter');
  await expect(page.getByTestId('kernel-details').getByRole('heading')).toContainText('Kernel 2');
  await page.keyboard.press('Tab');
  expect(await focused(), 'one tab stop for the whole grid').toBeNull();
});

test('the GPU fleet says honestly when there is no GPU, and charts the host', async ({ page }) => {
  await openDashboard(page);
  const node = page.getByTestId('gpu-node').first();
  await expect(node).toBeVisible({ timeout: 20_000 });
  if (fs.existsSync('/dev/nvidiactl')) {
    await expect(node.getByTestId('gpu-card').first()).toBeVisible();
  } else {
    await expect(node.getByTestId('no-gpu')).toContainText(/^No GPU on .+: .+/);
    await expect(page.getByTestId('gpu-card')).toHaveCount(0);
  }
  await expect(node.getByTestId('host-cpu')).toHaveText(/^\d+ %$/);
  await expect(node.getByTestId('host-memory')).toHaveText(/^\d+ %$/);
  // Live: the sample time moves on once a second.
  const sampled = node.locator('.gpu-node__head .muted');
  const first = await sampled.textContent();
  await expect.poll(() => sampled.textContent(), { timeout: 10_000 }).not.toBe(first);
});

/** Frames per second over `ms` of requestAnimationFrame, and how many heartbeats arrived meanwhile. */
async function measureFps(page: Page, ms = 5000) {
  return page.evaluate(async (duration) => {
    const serverTime = () => document.querySelector('[data-testid="server-time"]')?.textContent ?? '';
    let heartbeats = 0;
    let last = serverTime();
    const frames: number[] = [];
    await new Promise<void>((resolve) => {
      const tick = (now: number) => {
        frames.push(now);
        if (serverTime() !== last) {
          heartbeats += 1;
          last = serverTime();
        }
        if (now - frames[0]! < duration) requestAnimationFrame(tick);
        else resolve();
      };
      requestAnimationFrame(tick);
    });
    const gaps = frames.slice(1).map((t, i) => t - frames[i]!);
    const seconds = (frames.at(-1)! - frames[0]!) / 1000;
    const sorted = gaps.slice().sort((a, b) => a - b);
    return {
      fps: (frames.length - 1) / seconds,
      median_frame_ms: sorted[Math.floor(sorted.length / 2)]!,
      worst_frame_ms: sorted.at(-1)!,
      frames: frames.length,
      seconds,
      heartbeats,
    };
  }, ms);
}

test('keeps a steady frame rate with 240 kernels and live telemetry', async ({ page }) => {
  test.setTimeout(120_000);
  await signInAsAdmin(page);
  // The same browser on a page with only the shell (header and heartbeat): what this machine gives.
  await page.goto('/does/not/exist');
  await expect(page.getByTestId('telemetry-state')).toHaveText('Live');
  const baseline = await measureFps(page);

  await page.goto('/');
  await expect(page.getByTestId('kernel-cell')).toHaveCount(240);
  await expect(page.getByTestId('gpu-node').first()).toBeVisible({ timeout: 20_000 });
  const dashboard = await measureFps(page);
  const floor = Math.max(FPS_FLOOR, RELATIVE_FLOOR * baseline.fps);
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(
    path.join(results, 'dashboard-fps.json'),
    JSON.stringify({ dashboard, baseline, floor, viewport: page.viewportSize() }, null, 2),
  );
  expect(dashboard.heartbeats, 'telemetry flowed while measuring').toBeGreaterThanOrEqual(3);
  expect(dashboard.fps, JSON.stringify({ dashboard, baseline })).toBeGreaterThanOrEqual(floor);
});

test('Φ and κ move while a training job runs', async ({ page }) => {
  test.setTimeout(420_000);
  await openDashboard(page);
  const training = (await jobs(page)).filter(
    (j) => ['pretrain', 'adapter'].includes(j.kind) && ['queued', 'running'].includes(j.status),
  );
  if (training.length === 0) {
    // The bootstrap has finished: train a little more, in the open.
    const response = await post(page, '/api/v1/jobs/', {
      kind: 'pretrain',
      priority: 0,
      hyperparameters: { preset: 'tiny', steps: 60, phi_every: 5, batch_size: 4, seq_len: 64 },
    });
    expect(response.status(), await response.text()).toBe(201);
  }
  const phi = page.getByTestId('phi-value');
  await expect(phi).toHaveText(/^\d\.\d{3}$/, { timeout: 360_000 });
  const source = page.getByTestId('reading-source');
  const [firstPhi, firstSource] = [await phi.textContent(), await source.textContent()];
  // Each new reading carries a new step; Φ itself changes as the trunk learns.
  await expect.poll(() => source.textContent(), { timeout: 120_000 }).not.toBe(firstSource);
  await expect.poll(() => phi.textContent(), { timeout: 180_000 }).not.toBe(firstPhi);
  await expect(page.getByTestId('kappa-value')).toHaveText(/^\d+\.\d$/);
  await expect(page.getByTestId('regime-value')).toHaveText(/linear|geometric|breakdown/);
  await expect(page.getByTestId('avatar-figure')).not.toHaveAttribute('data-expression', 'asleep');
});

test('a kernel’s cell turns learning, then active, while an adapter job trains it', async ({ page }) => {
  test.setTimeout(540_000);
  await openDashboard(page);
  await expect(page.getByTestId('kernel-cell')).toHaveCount(240);

  // Teach it something: an upload, then a short adapter job on the kernel it was routed to.
  const cookies = await page.context().cookies();
  const csrf = cookies.find((c) => c.name === 'csrftoken')?.value ?? '';
  const text = Array.from(
    { length: 40 },
    (_, i) => `The heart of kernel geometry ${i}: a basin on the simplex, measured by Fisher and Rao.`,
  ).join('\n');
  const upload = await page.request.post('/api/v1/uploads/', {
    headers: { 'X-CSRFToken': csrf },
    multipart: {
      file: { name: 'geometry.txt', mimeType: 'text/plain', buffer: Buffer.from(text) },
      domain: 'auto',
    },
  });
  if (upload.status() === 405 || upload.status() === 404) {
    // No upload API in this build: no adapter job can be queued, so assert what the grid shows
    // is what the server says the kernels are.
    test
      .info()
      .annotations.push({ type: 'skip-reason', description: 'POST /api/v1/uploads/ is not available' });
    const server = new Map<number, string>();
    for (let url: string | null = '/api/v1/kernels/'; url;) {
      const response = await page.request.get(url);
      expect(response.status()).toBe(200);
      const page_ = (await response.json()) as {
        next: string | null;
        results: { index: number; status: string }[];
      };
      for (const k of page_.results) server.set(k.index, k.status);
      url = page_.next;
    }
    expect(server.size).toBe(240);
    const shown = await page
      .getByTestId('kernel-cell')
      .evaluateAll((cells) =>
        cells.map((c) => [Number(c.getAttribute('data-index')), c.getAttribute('data-status')]),
      );
    expect(new Map(shown as [number, string][])).toEqual(server);
    return;
  }
  expect(upload.status(), await upload.text()).toBe(201);
  const stored = (
    (await upload.json()) as { results: { upload: { id: number; routed: { kernel: number }[] } }[] }
  ).results[0]!.upload;
  const kernel = stored.routed[0]?.kernel ?? 0;
  const job = await post(page, '/api/v1/jobs/', {
    kind: 'adapter',
    priority: 100,
    datasets: [stored.id],
    target_kernels: [kernel],
    hyperparameters: { steps: 20, phi_every: 5, batch_size: 4, seq_len: 64 },
  });
  expect(job.status(), await job.text()).toBe(201);
  const targets = [kernel];
  const cell = page.locator(`[data-testid="kernel-cell"][data-index="${targets[0]}"]`);
  await expect(cell).toHaveAttribute('data-status', 'learning', { timeout: 420_000 });
  await page.screenshot({ path: path.join(screenshots, 'dashboard-learning.png'), fullPage: true });
  await expect(cell).toHaveAttribute('data-status', 'active', { timeout: 240_000 });
});

test('screenshots of the whole dashboard at laptop, desktop and wide widths', async ({ page }) => {
  await openDashboard(page);
  await expect(page.getByTestId('kernel-cell')).toHaveCount(240);
  await expect(page.getByTestId('gpu-node').first()).toBeVisible({ timeout: 20_000 });
  for (const [width, height] of [
    [1280, 800],
    [1440, 900],
    [2560, 1440],
  ] as const) {
    await page.setViewportSize({ width, height });
    await page.waitForTimeout(500);
    await page.screenshot({
      path: path.join(screenshots, `dashboard-${width}x${height}.png`),
      fullPage: true,
    });
  }
});

test('the learning loop: an admin switches it off and on, and a cycle run now says what it did', async ({
  page,
}) => {
  await openDashboard(page);
  const panel = page.getByRole('region', { name: 'Learning loop', exact: true });
  await panel.scrollIntoViewIfNeeded();
  const toggle = panel.getByRole('switch', { name: 'Autonomous learning' });
  await expect(toggle).toHaveAttribute('aria-checked', 'true');
  await toggle.click();
  await expect(toggle).toHaveAttribute('aria-checked', 'false');
  await expect(panel).toContainText('Off');
  const state = await page.request.get('/api/v1/learning/loop/');
  expect((await state.json()).enabled).toBe(false);
  await toggle.click();
  await expect(toggle).toHaveAttribute('aria-checked', 'true');
  await expect(panel).toContainText('next cycle in');

  // While the bootstrap jobs train, the cycle is recorded as not run, with why; once they are
  // done it runs: with no signals yet it says there was nothing to learn, and with the thumbs
  // the chat tests gave it queues an adapter job on the kernel that answered.
  await panel.getByRole('button', { name: 'Run one cycle now' }).click();
  const newest = panel.getByRole('list', { name: 'Learning cycles, newest first' }).locator('li').first();
  await expect(newest.getByTestId('cycle-status')).toHaveText(/skipped|done/, { timeout: 60_000 });
  await expect(newest).toContainText(
    /not run: \d+ jobs? queued or running|nothing to learn|adapter job \d+ on kernel \d+/,
  );
  await panel.screenshot({ path: path.join(screenshots, 'learning-loop.png') });
});
