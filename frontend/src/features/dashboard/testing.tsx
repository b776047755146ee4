// Test helpers for the dashboard's panels: render inside the real telemetry provider, with the
// fake socket standing in for the server. Only imported by tests.
import { act, render } from '@testing-library/react';
import type { ReactElement } from 'react';
import { MemoryRouter } from 'react-router-dom';
import { vi } from 'vitest';
import { FakeWebSocket } from '../../test/fakeWebSocket';
import { TelemetryProvider } from '../telemetry/TelemetryProvider';

export function renderLive(ui: ReactElement) {
  vi.stubGlobal('WebSocket', FakeWebSocket);
  const view = render(
    <MemoryRouter>
      <TelemetryProvider onUnauthorized={() => {}}>{ui}</TelemetryProvider>
    </MemoryRouter>,
  );
  const socket = FakeWebSocket.latest();
  act(() => socket.acceptConnection());
  /** The server sends `payload` on `topic`. */
  const send = (topic: string, payload: unknown) =>
    act(() => socket.receive({ type: 'event', topic, payload }));
  return { ...view, socket, send };
}

/** ISO time `seconds` after a fixed instant. */
export function at(seconds: number): string {
  return new Date(Date.UTC(2025, 0, 1, 12, 0, 0) + seconds * 1000).toISOString();
}
