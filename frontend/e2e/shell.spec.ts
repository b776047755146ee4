import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { USER_FIELDS } from '../src/api/types';
import { ADMIN, expect, signIn, signInAsAdmin, test } from './fixtures';

const screenshots = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '..',
  'test-results',
  'screenshots',
);

test('an anonymous visit to / lands on the login page', async ({ page }) => {
  await page.goto('/');
  await expect(page).toHaveURL(/\/login(\?next=%2F)?$/);
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();
  await expect(page.getByLabel('Username')).toBeFocused();
});

test('a wrong password shows the server’s error', async ({ page }) => {
  await signIn(page, 'not-the-password');
  await expect(page.getByRole('alert')).toHaveText('Invalid username or password.');
  await expect(page).toHaveURL(/\/login/);
  await expect(page.getByLabel('Password')).toHaveValue('');
});

test('signing in as admin shows the shell with the username and admin badge', async ({ page }) => {
  await signIn(page);
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByRole('heading', { name: `Welcome, ${ADMIN.username}` })).toBeVisible();
  await expect(page.getByTestId('username')).toHaveText(ADMIN.username);
  await expect(page.locator('header .badge')).toHaveText('admin');
  await expect(page.getByRole('link', { name: 'Django admin' })).toHaveAttribute('href', '/admin/');
  await expect(page.getByRole('link', { name: 'API documentation' })).toHaveAttribute(
    'href',
    '/api/v1/schema/swagger/',
  );
});

test('the heartbeat ticks: live, with a server time that changes', async ({ page }) => {
  await signInAsAdmin(page);
  const state = page.getByTestId('telemetry-state');
  const serverTime = page.getByTestId('server-time');
  await expect(state).toHaveText('Live');
  await expect(serverTime).toHaveText(/^\d{2}:\d{2}:\d{2} UTC$/);
  await expect(page.getByTestId('client-count')).toHaveText(/^[1-9]\d*$/);

  const first = await serverTime.textContent();
  await expect.poll(() => serverTime.textContent(), { timeout: 5_000 }).not.toBe(first);
  await expect(state).toHaveText('Live');
  // A worker (beat → broker → worker → channel layer → this page) announces itself.
  await expect(page.getByTestId('worker-seen')).toHaveText(/^seen \d+ s ago$/, { timeout: 20_000 });

  await page.screenshot({ path: path.join(screenshots, 'shell.png'), fullPage: true });
});

test('an unknown client route renders the app’s not-found page', async ({ page }) => {
  await signInAsAdmin(page);
  const response = await page.goto('/does/not/exist');
  expect(response?.status(), 'Django should serve the app for client routes').toBe(200);
  await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
  await expect(page.getByTestId('username')).toHaveText(ADMIN.username);
});

test('signing out returns to the login page and ends the session', async ({ page }) => {
  await signInAsAdmin(page);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/login$/);
  await expect(page.getByRole('heading', { name: 'Sign in' })).toBeVisible();

  await page.goto('/');
  await expect(page).toHaveURL(/\/login\?next=%2F$/);
});

test('the health endpoints answer', async ({ request }) => {
  const health = await request.get('/healthz');
  expect(health.status()).toBe(200);
  expect(await health.json()).toMatchObject({ status: 'ok' });

  const ready = await request.get('/readyz');
  const body = (await ready.json()) as { status: string; components: Record<string, { status: string }> };
  expect(ready.status(), JSON.stringify(body)).toBe(200);
  expect(body.status).toBe('ok');
  expect(Object.keys(body.components).sort()).toEqual(['broker', 'channel_layer', 'database', 'worker']);
  for (const component of Object.values(body.components)) expect(component.status).toBe('ok');
});

test('the OpenAPI schema matches what the app expects of the auth endpoints', async ({ request }) => {
  expect((await request.get('/api/v1/schema/?format=json')).status(), 'anonymous').toBe(401);
  const { csrfToken } = (await (await request.get('/api/v1/auth/csrf/')).json()) as { csrfToken: string };
  const login = await request.post('/api/v1/auth/login/', {
    data: { username: ADMIN.username, password: ADMIN.password },
    headers: { 'X-CSRFToken': csrfToken },
  });
  expect(login.status()).toBe(200);
  const response = await request.get('/api/v1/schema/?format=json');
  expect(response.status()).toBe(200);
  const schema = (await response.json()) as OpenApi;

  for (const [path, method] of [
    ['/api/v1/auth/me/', 'get'],
    ['/api/v1/auth/login/', 'post'],
  ] as const) {
    const user = jsonResponseSchema(schema, path, method, '200');
    expect(Object.keys(user.properties ?? {}).sort(), `${method} ${path} fields`).toEqual(
      [...USER_FIELDS].sort(),
    );
    expect([...(user.required ?? [])].sort(), `${method} ${path} required`).toEqual([...USER_FIELDS].sort());
  }
  const csrf = jsonResponseSchema(schema, '/api/v1/auth/csrf/', 'get', '200');
  expect(Object.keys(csrf.properties ?? {})).toContain('csrfToken');
  expect(Object.keys(schema.paths['/api/v1/auth/logout/']?.post?.responses ?? {})).toContain('204');
});

interface SchemaObject {
  $ref?: string;
  properties?: Record<string, unknown>;
  required?: string[];
}

interface OpenApi {
  paths: Record<
    string,
    Record<string, { responses: Record<string, { content?: Record<string, { schema: SchemaObject }> }> }>
  >;
  components: { schemas: Record<string, SchemaObject> };
}

function jsonResponseSchema(schema: OpenApi, path: string, method: string, status: string): SchemaObject {
  const found = schema.paths[path]?.[method]?.responses[status]?.content?.['application/json']?.schema;
  if (!found)
    throw new Error(`the schema has no JSON ${status} response for ${method.toUpperCase()} ${path}`);
  const ref = found.$ref?.replace('#/components/schemas/', '');
  const resolved = ref === undefined ? found : schema.components.schemas[ref];
  if (!resolved) throw new Error(`the schema's ${found.$ref} is not defined`);
  return resolved;
}
