import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from '@playwright/test';
import { ADMIN } from './e2e/credentials';

// End-to-end tests against the real product: `qig up` with a fresh data directory, driven in the
// system's Chromium (no browser download). See README.md.

const frontendDir = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(frontendDir, '..');

function portFromEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const port = Number(raw);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new Error(`${name} must be a TCP port number (1-65535), got ${JSON.stringify(raw)}`);
  }
  return port;
}

const port = portFromEnv('QIG_E2E_PORT', 9311);
const baseURL = `http://127.0.0.1:${port}`;
const qig = process.env.QIG_E2E_QIG ?? path.join(repoRoot, '.venv', 'bin', 'qig');

// One fresh data directory per run. Workers re-read this file but inherit the runner's
// environment, so they see the directory made here instead of making their own. It is removed
// when the run passes (the server has stopped by then) and kept for a look when it fails.
if (!process.env.QIG_E2E_DATA_DIR) {
  const made = fs.mkdtempSync(path.join(os.tmpdir(), 'qig-e2e-'));
  process.env.QIG_E2E_DATA_DIR = made;
  process.on('exit', (code) => {
    if (code === 0) fs.rmSync(made, { recursive: true, force: true });
    else console.log(`qig e2e: the server's data directory is kept at ${made}`);
  });
}
const dataDir = process.env.QIG_E2E_DATA_DIR;

// With PostgreSQL (services mode), a fresh database of the run's own, like a fresh install: the
// database the backend tests' live products used holds their users' conversations and jobs.
if (process.env.DATABASE_URL && !process.env.QIG_E2E_DATABASE_URL) {
  const url = new URL(process.env.DATABASE_URL);
  const name = 'qig_e2e';
  const sql = (statement: string) =>
    execFileSync('psql', [url.toString(), '-v', 'ON_ERROR_STOP=1', '-q', '-c', statement], {
      stdio: 'inherit',
    });
  sql(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  sql(`CREATE DATABASE ${name}`);
  url.pathname = `/${name}`;
  process.env.QIG_E2E_DATABASE_URL = url.toString();
}

// With Redis (services mode), its database emptied, like a fresh install: the backend tests that
// ran before in this database leave telemetry history behind (a GPU node's samples from minutes
// ago, which the fleet panel would show as this server's).
if (process.env.REDIS_URL && !process.env.QIG_E2E_REDIS_FLUSHED) {
  execFileSync('redis-cli', ['-u', process.env.REDIS_URL, 'flushdb'], { stdio: 'ignore' });
  process.env.QIG_E2E_REDIS_FLUSHED = '1'; // once per run: workers re-read this file
}

/** The runner's environment (DATABASE_URL, REDIS_URL… from CI), minus unset entries. */
const inherited = Object.fromEntries(
  Object.entries(process.env).filter((entry): entry is [string, string] => entry[1] !== undefined),
);

export default defineConfig({
  testDir: './e2e',
  outputDir: './test-results/playwright',
  fullyParallel: false,
  workers: 1,
  retries: process.env.CI ? 1 : 0,
  forbidOnly: Boolean(process.env.CI),
  reporter: 'list',
  timeout: 60_000,
  expect: { timeout: 10_000 },
  use: {
    baseURL,
    browserName: 'chromium',
    launchOptions: {
      executablePath: process.env.QIG_E2E_CHROMIUM ?? '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--no-first-run',
      ],
    },
    viewport: { width: 1440, height: 900 },
    trace: 'retain-on-failure',
    screenshot: 'only-on-failure',
  },
  webServer: {
    command: `"${qig}" up --host 127.0.0.1 --port ${port}`,
    cwd: repoRoot,
    env: {
      ...inherited,
      QIG_DATA_DIR: dataDir,
      ...(process.env.QIG_E2E_DATABASE_URL ? { DATABASE_URL: process.env.QIG_E2E_DATABASE_URL } : {}),
      QIG_ADMIN_PASSWORD: ADMIN.password,
      QIG_WORKER_HEARTBEAT_S: '2',
      // A central node: the Federation panel's admin side (add, token once, revoke) is tested.
      QIG_FEDERATION: 'central',
      // A small bootstrap, as on a fresh install: the coordizer and pretrain jobs run while the
      // UI tests do, so the dashboard shows live training and chat gets a trained checkpoint.
      QIG_BOOTSTRAP: '1',
      QIG_BOOTSTRAP_STEPS: '200',
      QIG_BOOTSTRAP_CORPUS_MB: '0.2',
      QIG_BOOTSTRAP_VOCAB: '1024',
    },
    url: `${baseURL}/healthz`,
    timeout: 180_000,
    reuseExistingServer: false,
    stdout: process.env.CI ? 'pipe' : 'ignore',
    stderr: 'pipe',
    gracefulShutdown: { signal: 'SIGTERM', timeout: 15_000 },
  },
});
