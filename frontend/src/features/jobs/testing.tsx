// Test helpers for the knowledge & training panels: a signed-in session, the telemetry socket
// (FakeWebSocket) and a stand-in for XMLHttpRequest (the browser's network, outside our process).

import { act, render } from '@testing-library/react';
import type { ReactNode } from 'react';
import { MemoryRouter } from 'react-router-dom';
import { vi } from 'vitest';
import type { User } from '../../api/types';
import { FakeWebSocket } from '../../test/fakeWebSocket';
import { AuthContext, type AuthSession } from '../auth/useAuth';
import { TelemetryProvider } from '../telemetry/TelemetryProvider';
import { placeholder } from './jobState';
import type { Job } from './types';

export function renderSignedIn(user: User, ui: ReactNode) {
  vi.stubGlobal('WebSocket', FakeWebSocket);
  const session: AuthSession = {
    status: 'signed-in',
    user,
    retry: vi.fn(),
    signIn: vi.fn(),
    signOut: vi.fn(async () => {}),
    sessionEnded: vi.fn(),
    verifySession: vi.fn(async () => {}),
  };
  const view = render(
    <MemoryRouter>
      <AuthContext.Provider value={session}>
        <TelemetryProvider onUnauthorized={session.sessionEnded}>{ui}</TelemetryProvider>
      </AuthContext.Provider>
    </MemoryRouter>,
  );
  const socket = FakeWebSocket.latest();
  act(() => socket.acceptConnection());
  /** The server publishes `payload` on `topic`. */
  const publish = (topic: string, payload: unknown) =>
    act(() => socket.receive({ type: 'event', topic, payload }));
  return { ...view, socket, publish };
}

export function page<T>(results: T[]) {
  return { count: results.length, next: null, previous: null, results };
}

export function job(overrides: Partial<Job> & { id: number }): Job {
  return {
    ...placeholder(overrides.id, 'adapter', 'queued'),
    error_kind: '',
    created_by: 'admin',
    created_at: '2026-11-21T10:00:00Z',
    ...overrides,
  };
}

/** A stand-in for XMLHttpRequest; install with `vi.stubGlobal('XMLHttpRequest', FakeXhr)`. */
export class FakeXhr {
  static instances: FakeXhr[] = [];

  method = '';
  url = '';
  headers: Record<string, string> = {};
  withCredentials = false;
  body: FormData | null = null;
  status = 0;
  statusText = '';
  responseText = '';
  readonly upload: { onprogress: ((event: ProgressEvent) => void) | null } = { onprogress: null };
  onload: (() => void) | null = null;
  onerror: (() => void) | null = null;

  constructor() {
    FakeXhr.instances.push(this);
  }

  open(method: string, url: string) {
    this.method = method;
    this.url = url;
  }

  setRequestHeader(name: string, value: string) {
    this.headers[name] = value;
  }

  send(body: FormData) {
    this.body = body;
  }

  // The server's side.
  progress(loaded: number, total: number) {
    act(() => this.upload.onprogress?.({ loaded, total, lengthComputable: true } as ProgressEvent));
  }

  respond(status: number, body: unknown, statusText = '') {
    this.status = status;
    this.statusText = statusText;
    this.responseText = typeof body === 'string' ? body : JSON.stringify(body);
    act(() => this.onload?.());
  }

  /** The request's form fields, files by name. */
  fields(): Record<string, string> {
    const out: Record<string, string> = {};
    this.body?.forEach((value, key) => {
      out[key] = typeof value === 'string' ? value : (value as File).name;
    });
    return out;
  }
}
