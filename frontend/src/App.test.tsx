import { act, render, screen, waitFor } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter, useLocation } from 'react-router-dom';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { App } from './App';
import { FakeWebSocket } from './test/fakeWebSocket';
import { ADMIN, ANALYST, json, stubServer } from './test/http';

function CurrentUrl() {
  const location = useLocation();
  return <output data-testid="url">{location.pathname + location.search}</output>;
}

function renderApp(url: string) {
  render(
    <MemoryRouter initialEntries={[url]}>
      <App />
      <CurrentUrl />
    </MemoryRouter>,
  );
}

/** The dashboard's queue panel asks for the job list, its learning-loop panel for the loop. */
const NO_CYCLES = { count: 0, next: null, previous: null, results: [] };
const LOOP = {
  enabled: true,
  enabled_source: 'setting',
  enabled_by: null,
  interval_s: 300,
  idle_s: 60,
  max_actions: 3,
  idle: { idle: true, reason: 'idle', last_request_at: null, in_flight: 0, running_jobs: 0 },
  next_cycle_at: null,
  running: false,
  last_cycle: null,
  can_control: true,
};
const NO_JOBS = {
  'GET /api/v1/jobs/': () => json(200, { count: 0, next: null, previous: null, results: [] }),
  'GET /api/v1/learning/loop/': () => json(200, LOOP),
  'GET /api/v1/learning/cycles/?page_size=20': () => json(200, NO_CYCLES),
};

beforeEach(() => {
  vi.stubGlobal('WebSocket', FakeWebSocket);
});

describe('App routing', () => {
  it('sends an anonymous visitor to the login page, remembering where they were going', async () => {
    stubServer({ 'GET /api/v1/auth/me/': () => json(401, { detail: 'Not signed in.' }) });
    renderApp('/kernels?page=2');
    expect(await screen.findByRole('heading', { name: 'Sign in' })).toBeInTheDocument();
    expect(screen.getByTestId('url')).toHaveTextContent('/login?next=%2Fkernels%3Fpage%3D2');
    expect(FakeWebSocket.instances).toHaveLength(0);
  });

  it('shows the dashboard with admin and API links to a staff user', async () => {
    stubServer({ 'GET /api/v1/auth/me/': () => json(200, ADMIN), ...NO_JOBS });
    renderApp('/');
    expect(await screen.findByRole('heading', { name: 'Welcome, admin' })).toBeInTheDocument();
    for (const panel of [
      'Avatar',
      'Consciousness',
      'Kernels',
      'GPU fleet',
      'Fine-tuning queue',
      'Learning log',
      'Learning loop',
      'Learning',
      'Chat',
      'Knowledge',
      'Federation',
    ]) {
      expect(screen.getByRole('heading', { name: panel, level: 2 })).toBeInTheDocument();
    }
    expect(screen.getByRole('link', { name: 'Open chat' })).toHaveAttribute('href', '/chat');
    expect(screen.getByRole('link', { name: 'Upload knowledge' })).toHaveAttribute('href', '/knowledge');
    expect(screen.getByRole('link', { name: 'Django admin' })).toHaveAttribute('href', '/admin/');
    expect(screen.getByRole('link', { name: 'API documentation' })).toHaveAttribute(
      'href',
      '/api/v1/schema/swagger/',
    );
    // The shell opens its socket in an effect, which may run after the page shows.
    await waitFor(() => expect(FakeWebSocket.instances.length).toBeGreaterThan(0));
  });

  it('asks for every dashboard topic in the one subscribe sent when the socket opens', async () => {
    stubServer({ 'GET /api/v1/auth/me/': () => json(200, ADMIN), ...NO_JOBS });
    renderApp('/');
    await screen.findByRole('heading', { name: 'Welcome, admin' });
    await waitFor(() => expect(FakeWebSocket.instances).toHaveLength(1));
    act(() => FakeWebSocket.latest().acceptConnection());
    expect(FakeWebSocket.latest().sent).toHaveLength(1);
    const [subscribe] = FakeWebSocket.latest().sent as { topics: string[] }[];
    expect([...subscribe!.topics].sort()).toEqual(
      ['consciousness', 'federation', 'gpu', 'interactions', 'jobs', 'kernels', 'learning', 'system'].sort(),
    );
  });

  it('offers no admin link to a user who is not staff', async () => {
    stubServer({ 'GET /api/v1/auth/me/': () => json(200, ANALYST), ...NO_JOBS });
    renderApp('/');
    expect(await screen.findByRole('heading', { name: 'Welcome, ada' })).toBeInTheDocument();
    expect(screen.queryByRole('link', { name: 'Django admin' })).toBeNull();
  });

  it('renders unknown routes as not found inside the shell', async () => {
    stubServer({ 'GET /api/v1/auth/me/': () => json(200, ADMIN) });
    renderApp('/does/not/exist');
    expect(await screen.findByRole('heading', { name: 'Page not found' })).toBeInTheDocument();
    expect(screen.getByText('/does/not/exist', { selector: 'code' })).toBeInTheDocument();
    expect(screen.getByTestId('username')).toHaveTextContent('admin');
  });

  it('returns to a plain login page after signing out', async () => {
    document.cookie = 'csrftoken=from-cookie; path=/';
    const requests = stubServer({
      'GET /api/v1/auth/me/': () => json(200, ADMIN),
      'POST /api/v1/auth/logout/': () => json(204),
    });
    renderApp('/');
    await userEvent.click(await screen.findByRole('button', { name: 'Sign out' }));
    expect(await screen.findByRole('heading', { name: 'Sign in' })).toBeInTheDocument();
    expect(screen.getByTestId('url')).toHaveTextContent(/^\/login$/);
    expect(requests.at(-1)?.headers['X-CSRFToken']).toBe('from-cookie');
  });

  it('goes to the login page when the telemetry socket is refused for want of a session', async () => {
    stubServer({ 'GET /api/v1/auth/me/': () => json(200, ADMIN) });
    renderApp('/does/not/exist');
    await screen.findByRole('heading', { name: 'Page not found' });
    // The shell opens its socket in an effect, which may run after the page is on screen.
    await waitFor(() => expect(FakeWebSocket.instances).not.toHaveLength(0));
    act(() => {
      FakeWebSocket.latest().acceptConnection();
      FakeWebSocket.latest().serverClose(4401);
    });
    expect(await screen.findByRole('heading', { name: 'Sign in' })).toBeInTheDocument();
    expect(screen.getByTestId('url')).toHaveTextContent('/login?next=%2Fdoes%2Fnot%2Fexist');
  });

  it('checks the session when the socket is refused at the handshake, and signs out if it is gone', async () => {
    let signedIn = true;
    stubServer({
      'GET /api/v1/auth/me/': () => (signedIn ? json(200, ADMIN) : json(403, { detail: 'Not signed in.' })),
    });
    renderApp('/');
    await screen.findByRole('heading', { name: 'Welcome, admin' });
    await waitFor(() => expect(FakeWebSocket.instances).not.toHaveLength(0));
    act(() => FakeWebSocket.latest().acceptConnection());

    // The server restarts: the session still stands, so the shell stays and keeps reconnecting.
    act(() => FakeWebSocket.latest().serverClose(1012));
    expect(await screen.findByText(/Reconnecting/)).toBeInTheDocument();
    expect(screen.getByRole('heading', { name: 'Welcome, admin' })).toBeInTheDocument();

    // The session expired meanwhile: the next refused handshake (1006) leads to the login page.
    signedIn = false;
    await waitFor(() => expect(FakeWebSocket.instances).toHaveLength(2), { timeout: 2000 });
    act(() => FakeWebSocket.latest().serverClose(1006));
    expect(await screen.findByRole('heading', { name: 'Sign in' })).toBeInTheDocument();
    expect(screen.getByTestId('url')).toHaveTextContent('/login?next=%2F');
  });

  it('offers a retry when the session check fails for another reason', async () => {
    let calls = 0;
    stubServer({
      'GET /api/v1/auth/me/': () => (++calls === 1 ? json(502, { detail: 'Bad gateway' }) : json(200, ADMIN)),
    });
    renderApp('/');
    expect(await screen.findByRole('alert')).toHaveTextContent('Could not check your session: Bad gateway');
    await userEvent.click(screen.getByRole('button', { name: 'Try again' }));
    expect(await screen.findByRole('heading', { name: 'Welcome, admin' })).toBeInTheDocument();
  });
});
