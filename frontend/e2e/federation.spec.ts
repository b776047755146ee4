import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Page } from '@playwright/test';
import { expect, signInAsAdmin, test } from './fixtures';

// Federation against the real product started as a central (QIG_FEDERATION=central in the e2e
// web server's environment): an admin adds an edge node from the dashboard, sees its join token
// once, and revokes it. Run with:
//   npx playwright test e2e/federation.spec.ts

const results = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', 'test-results');
const screenshots = path.join(results, 'screenshots');

async function federationPanel(page: Page) {
  const panel = page.getByRole('region', { name: 'Federation', exact: true });
  await panel.scrollIntoViewIfNeeded();
  // The topic's first message says this node is a central.
  await expect(panel.getByTestId('federation-summary')).toHaveText(/^Central · \d+ nodes? · \d+ online$/);
  return panel;
}

test('federation: an admin adds an edge node, sees its join token once, and revokes it', async ({ page }) => {
  await signInAsAdmin(page);
  await expect(page.getByRole('heading', { name: 'Kernels', level: 2 })).toBeVisible();
  let panel = await federationPanel(page);

  const name = `e2e-edge-${Date.now().toString(36)}${Math.floor(Math.random() * 1000)}`;
  await panel.getByLabel('Node name', { exact: true }).fill(name);
  await panel.getByLabel('Size', { exact: true }).selectOption('minimal');
  await panel.getByRole('button', { name: 'Add node', exact: true }).click();

  // The token, once: in a box that says so, with the command to run on the edge.
  const box = panel.getByRole('region', { name: `Join token for ${name}` });
  await expect(box).toBeVisible();
  await expect(box).toContainText('Shown once — copy it now.');
  const token = ((await box.getByTestId('join-token').textContent()) ?? '').trim();
  expect(token.length).toBeGreaterThan(8);
  const command = box.getByTestId('join-command');
  await expect(command).toHaveText(/^qig federation join \S+ \S+$/);
  expect(((await command.textContent()) ?? '').trim().endsWith(` ${token}`)).toBe(true);
  await box.getByRole('button', { name: 'Copy join command' }).click();
  // Copied, or (where the browser refuses the clipboard) selected for Ctrl+C.
  await expect(box.getByRole('status')).toHaveText(/copied|press Ctrl\+C/);
  await panel.screenshot({ path: path.join(screenshots, 'federation-join-token.png') });

  await box.getByRole('button', { name: 'Dismiss', exact: true }).click();
  await expect(box).toHaveCount(0);
  await expect(panel.getByTestId('join-token')).toHaveCount(0);
  await expect(page.getByText(token)).toHaveCount(0);

  // The node is listed, pending until an edge joins with the token.
  const row = panel.getByRole('row').filter({ has: page.getByRole('rowheader', { name, exact: true }) });
  await expect(row).toHaveCount(1);
  await expect(row.getByTestId('node-status')).toHaveText('pending');
  await expect(row.getByRole('button', { name: `New token for ${name}` })).toBeVisible();

  // The same name again is refused, and the form says why.
  await panel.getByLabel('Node name', { exact: true }).fill(name);
  await panel.getByRole('button', { name: 'Add node', exact: true }).click();
  await expect(panel.getByLabel('Node name', { exact: true })).toHaveAttribute('aria-invalid', 'true');
  await expect(panel.getByRole('alert').first()).not.toBeEmpty();
  await expect(panel.getByRole('region', { name: /^Join token for/ })).toHaveCount(0);

  // Revoke, after the confirmation.
  const dialogs: string[] = [];
  page.once('dialog', (dialog) => {
    dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    void dialog.accept();
  });
  await row.getByRole('button', { name: `Revoke ${name}`, exact: true }).click();
  await expect(row.getByTestId('node-status')).toHaveText('revoked');
  expect(dialogs).toHaveLength(1);
  expect(dialogs[0]).toMatch(new RegExp(`^confirm: Revoke ${name}\\?`));
  await expect(row.getByRole('button', { name: /^(Revoke|New token)/ })).toHaveCount(0);

  // The server kept it: after a reload the topic's first message lists it revoked.
  await page.reload();
  panel = await federationPanel(page);
  const again = panel.getByRole('row').filter({ has: page.getByRole('rowheader', { name, exact: true }) });
  await expect(again.getByTestId('node-status')).toHaveText('revoked');

  // Its details: nothing received, nothing rejected.
  await again.getByRole('button', { name: `Details of ${name}` }).click();
  const details = panel.getByRole('region', { name: `${name}: packets and rejections` });
  await expect(details).toContainText(`No packet received from ${name} yet.`);
  await expect(details).toContainText(`No packet from ${name} was rejected.`);
  await panel.screenshot({ path: path.join(screenshots, 'federation.png') });
});

/** A free TCP port on loopback. */
async function freePort(): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

test('federation: a real edge joins, comes online with no lag, and a revocation cuts it off', async ({
  page,
  baseURL,
}) => {
  test.setTimeout(180_000);
  const { spawn } = await import('node:child_process');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const os = await import('node:os');
  await signInAsAdmin(page);
  const panel = await federationPanel(page);
  const name = `e2e-laptop-${Date.now().toString(36)}`;
  await panel.getByLabel('Node name', { exact: true }).fill(name);
  await panel.getByRole('button', { name: 'Add node', exact: true }).click();
  const box = panel.getByRole('region', { name: `Join token for ${name}` });
  const token = ((await box.getByTestId('join-token').textContent()) ?? '').trim();
  await box.getByRole('button', { name: 'Dismiss', exact: true }).click();

  // The edge: `qig serve` (the API alone) on a data dir of its own, embedded whatever the
  // central's mode, joining with the token at start.
  const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'qig-e2e-edge-'));
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !['DATABASE_URL', 'REDIS_URL'].includes(key) && !key.startsWith('QIG_'))
      env[key] = value;
  }
  Object.assign(env, {
    QIG_FEDERATION: 'edge',
    QIG_CENTRAL_URL: baseURL ?? '',
    QIG_JOIN_TOKEN: token,
    QIG_DATA_DIR: dataDir,
    QIG_BOOTSTRAP: '0',
    QIG_FEDERATION_HEARTBEAT_S: '1',
  });
  const port = await freePort();
  const edge = spawn(
    path.join(repoRoot, '.venv', 'bin', 'qig'),
    ['serve', '--size', 'minimal', '--port', String(port)],
    {
      cwd: repoRoot,
      env,
      stdio: 'ignore',
    },
  );
  try {
    const row = panel.getByRole('row').filter({ has: page.getByRole('rowheader', { name, exact: true }) });
    await expect(row.getByTestId('node-status')).toHaveText('online', { timeout: 90_000 });
    await expect(row).toContainText('up to date');
    await panel.screenshot({ path: path.join(screenshots, 'federation-online.png') });

    page.once('dialog', (dialog) => void dialog.accept());
    await row.getByRole('button', { name: `Revoke ${name}`, exact: true }).click();
    await expect(row.getByTestId('node-status')).toHaveText('revoked');
    // The edge hears it at once: its own API says its link is revoked.
    await expect
      .poll(
        async () => {
          const response = await fetch(`http://127.0.0.1:${port}/api/v1/federation/`, {
            headers: { Authorization: `Token ${await edgeToken(port, dataDir).catch(() => '')}` },
          }).catch(() => null);
          if (!response || !response.ok) return null;
          const body = (await response.json()) as { central?: { state?: string } };
          return body.central?.state ?? null;
        },
        { timeout: 30_000 },
      )
      .toBe('revoked');
  } finally {
    edge.kill('SIGTERM');
    await new Promise((resolve) => edge.once('exit', resolve));
    rmSync(dataDir, { recursive: true, force: true });
  }
});

/** An API token for the edge's admin (its password is in its data dir, made at first start). */
async function edgeToken(port: number, dataDir: string): Promise<string> {
  const { readFileSync } = await import('node:fs');
  const password = readFileSync(path.join(dataDir, 'admin_password'), 'utf8').trim();
  const response = await fetch(`http://127.0.0.1:${port}/api/v1/auth/token/`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ username: 'admin', password }),
  });
  const body = (await response.json()) as { token?: string };
  return body.token ?? '';
}
