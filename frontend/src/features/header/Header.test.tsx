import { act, render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter } from 'react-router-dom';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import type { User } from '../../api/types';
import { FakeWebSocket } from '../../test/fakeWebSocket';
import { ADMIN, ANALYST } from '../../test/http';
import { AuthContext, type AuthSession } from '../auth/useAuth';
import { TelemetryProvider } from '../telemetry/TelemetryProvider';
import { Header } from './Header';
import { formatServerTime } from './TelemetryIndicator';

function renderHeader(user: User, signOut = vi.fn(async () => {})) {
  const session: AuthSession = {
    status: 'signed-in',
    user,
    retry: vi.fn(),
    signIn: vi.fn(),
    signOut,
    sessionEnded: vi.fn(),
    verifySession: vi.fn(async () => {}),
  };
  render(
    <MemoryRouter>
      <AuthContext.Provider value={session}>
        <TelemetryProvider onUnauthorized={session.sessionEnded}>
          <Header />
        </TelemetryProvider>
      </AuthContext.Provider>
    </MemoryRouter>,
  );
  return session;
}

beforeEach(() => {
  vi.stubGlobal('WebSocket', FakeWebSocket);
});

describe('Header', () => {
  it('shows connecting with no numbers before the first heartbeat', () => {
    renderHeader(ADMIN);
    expect(screen.getByTestId('telemetry-state')).toHaveTextContent('Connecting');
    expect(screen.getByTestId('server-time')).toHaveTextContent('—');
    expect(screen.getByTestId('client-count')).toHaveTextContent('—');
  });

  it('shows live with the server time and client count of the last heartbeat', () => {
    renderHeader(ADMIN);
    const socket = FakeWebSocket.latest();
    act(() => {
      socket.acceptConnection();
      socket.receive({ type: 'hello', user: 'admin', topics: ['system'] });
      socket.receive({ type: 'heartbeat', server_time: '2026-11-21T10:00:00.123456+00:00', clients: 2 });
    });
    expect(screen.getByTestId('telemetry-state')).toHaveTextContent('Live');
    expect(screen.getByTestId('server-time')).toHaveTextContent('10:00:00 UTC');
    expect(screen.getByTestId('client-count')).toHaveTextContent('2');

    act(() => socket.receive({ type: 'heartbeat', server_time: '2026-11-21T10:00:01.2+00:00', clients: 3 }));
    expect(screen.getByTestId('server-time')).toHaveTextContent('10:00:01 UTC');
    expect(screen.getByTestId('client-count')).toHaveTextContent('3');
  });

  it('shows how long ago a worker spoke, by the server clock, and warns when it is quiet', () => {
    renderHeader(ADMIN);
    const socket = FakeWebSocket.latest();
    act(() => {
      socket.acceptConnection();
      socket.receive({ type: 'heartbeat', server_time: '2026-11-21T10:00:00+00:00', clients: 1 });
    });
    expect(screen.getByTestId('worker-seen')).toHaveTextContent('not heard yet');
    act(() => {
      socket.receive({
        type: 'event',
        topic: 'system',
        payload: { kind: 'worker.heartbeat', hostname: 'vm', pid: 42, time: '2026-11-21T09:59:58.5+00:00' },
      });
      socket.receive({ type: 'heartbeat', server_time: '2026-11-21T10:00:01+00:00', clients: 1 });
    });
    expect(screen.getByTestId('worker-seen')).toHaveTextContent('seen 3 s ago');
    expect(screen.getByTestId('worker-seen')).not.toHaveClass('telemetry__warn');
    act(() => socket.receive({ type: 'heartbeat', server_time: '2026-11-21T10:01:00+00:00', clients: 1 }));
    expect(screen.getByTestId('worker-seen')).toHaveTextContent('seen 62 s ago');
    expect(screen.getByTestId('worker-seen')).toHaveClass('telemetry__warn');
  });

  it('says reconnecting, keeping the last known time, when the socket drops', () => {
    renderHeader(ADMIN);
    const socket = FakeWebSocket.latest();
    act(() => {
      socket.acceptConnection();
      socket.receive({ type: 'heartbeat', server_time: '2026-11-21T10:00:00+00:00', clients: 1 });
      socket.serverClose(1006);
    });
    expect(screen.getByTestId('telemetry-state')).toHaveTextContent('Reconnecting (retry in 0.5 s)');
    expect(screen.getByTestId('server-time')).toHaveTextContent('10:00:00 UTC');
  });

  it('shows the username with an admin badge for staff only', () => {
    renderHeader(ADMIN);
    expect(screen.getByTestId('username')).toHaveTextContent('admin');
    expect(screen.getByText('admin', { selector: '.badge' })).toBeInTheDocument();
  });

  it('shows no badge for a user who is not staff', () => {
    renderHeader(ANALYST);
    expect(screen.getByTestId('username')).toHaveTextContent('ada');
    expect(document.querySelector('.badge')).toBeNull();
  });

  it('signs out, and shows why when that fails', async () => {
    const signOut = vi.fn(async () => {
      throw new Error('Cannot reach the server (offline).');
    });
    renderHeader(ADMIN, signOut);
    await userEvent.click(screen.getByRole('button', { name: 'Sign out' }));
    expect(signOut).toHaveBeenCalledTimes(1);
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Sign out failed: Cannot reach the server (offline).',
    );
    expect(screen.getByRole('button', { name: 'Sign out' })).toBeEnabled();
  });
});

describe('formatServerTime', () => {
  it('reads Python ISO times with microseconds as UTC clock time', () => {
    expect(formatServerTime('2026-11-21T10:00:00.123456+00:00')).toBe('10:00:00 UTC');
    expect(formatServerTime('2026-11-21T12:30:05+02:00')).toBe('10:30:05 UTC');
  });

  it('shows an unreadable time as the server sent it', () => {
    expect(formatServerTime('not a time')).toBe('not a time');
  });
});
