import { act, render, renderHook, screen } from '@testing-library/react';
import type { ReactNode } from 'react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FakeWebSocket } from '../../test/fakeWebSocket';
import { DEFAULT_RECONNECT_POLICY, reconnectDelay } from './telemetryConnection';
import { TelemetryProvider } from './TelemetryProvider';
import { useTelemetry, useTelemetryTopic } from './useTelemetry';

function mount(onUnauthorized = vi.fn()) {
  const wrapper = ({ children }: { children: ReactNode }) => (
    <TelemetryProvider onUnauthorized={onUnauthorized}>{children}</TelemetryProvider>
  );
  const hook = renderHook(() => useTelemetry(), { wrapper });
  return { ...hook, onUnauthorized };
}

const step = (fn: () => void) => act(fn);

beforeEach(() => {
  vi.useFakeTimers();
  vi.stubGlobal('WebSocket', FakeWebSocket);
});

afterEach(() => {
  vi.useRealTimers();
});

describe('useTelemetry', () => {
  it('opens one socket to /ws/telemetry/ on this host and subscribes to the system topic', () => {
    const { result } = mount();
    expect(FakeWebSocket.instances).toHaveLength(1);
    expect(FakeWebSocket.latest().url).toBe(`ws://${window.location.host}/ws/telemetry/`);
    expect(result.current.state).toBe('connecting');

    step(() => FakeWebSocket.latest().acceptConnection());
    expect(result.current.state).toBe('open');
    expect(FakeWebSocket.latest().sent).toEqual([{ type: 'subscribe', topics: ['system'] }]);
  });

  it('shows the server hello, heartbeat and subscription as sent', () => {
    const { result } = mount();
    const socket = FakeWebSocket.latest();
    step(() => {
      socket.acceptConnection();
      socket.receive({ type: 'hello', user: 'admin', topics: ['system'] });
      socket.receive({ type: 'heartbeat', server_time: '2026-11-21T10:00:00.123456+00:00', clients: 2 });
    });
    expect(result.current.user).toBe('admin');
    expect(result.current.heartbeat).toEqual({ serverTime: '2026-11-21T10:00:00.123456+00:00', clients: 2 });

    step(() => socket.receive({ type: 'subscribed', topics: ['system', 'jobs'] }));
    expect(result.current.topics).toEqual(['system', 'jobs']);
  });

  it('reconnects with a delay doubling from 0.5 s to 10 s, reset by a successful open', () => {
    const { result } = mount();
    step(() => FakeWebSocket.latest().serverClose(1006));

    const expectedDelays = [500, 1000, 2000, 4000, 8000, 10_000, 10_000];
    for (const [attempt, delay] of expectedDelays.entries()) {
      expect(result.current.state).toBe('reconnecting');
      expect(result.current.retryDelayMs).toBe(delay);
      const opened = FakeWebSocket.instances.length;
      step(() => vi.advanceTimersByTime(delay - 1));
      expect(FakeWebSocket.instances, `attempt ${attempt} came early`).toHaveLength(opened);
      step(() => vi.advanceTimersByTime(1));
      expect(FakeWebSocket.instances, `attempt ${attempt} did not come`).toHaveLength(opened + 1);
      step(() => FakeWebSocket.latest().serverClose(1006));
    }

    // A connection that opens resets the backoff: the next drop waits 0.5 s again.
    step(() => vi.advanceTimersByTime(10_000));
    step(() => FakeWebSocket.latest().acceptConnection());
    expect(result.current.state).toBe('open');
    expect(result.current.retryDelayMs).toBeNull();
    step(() => FakeWebSocket.latest().serverClose(1011));
    expect(result.current.retryDelayMs).toBe(500);
  });

  it('subscribes again to every topic after a reconnect', () => {
    const { result } = mount();
    step(() => FakeWebSocket.latest().acceptConnection());
    step(() => result.current.subscribe(['jobs', 'kernels']));
    expect(FakeWebSocket.latest().sent.at(-1)).toEqual({ type: 'subscribe', topics: ['jobs', 'kernels'] });

    // A topic we already have is asked for again: a listener that arrives later (a panel
    // mounted again) needs the history the server sends with each subscribe.
    step(() => result.current.subscribe(['jobs']));
    expect(FakeWebSocket.latest().sent.at(-1)).toEqual({ type: 'subscribe', topics: ['jobs'] });
    expect(FakeWebSocket.latest().sent).toHaveLength(3);

    step(() => FakeWebSocket.latest().serverClose(1012));
    step(() => vi.advanceTimersByTime(500));
    const second = FakeWebSocket.latest();
    expect(FakeWebSocket.instances).toHaveLength(2);
    step(() => second.acceptConnection());
    expect(second.sent).toEqual([{ type: 'subscribe', topics: ['system', 'jobs', 'kernels'] }]);
  });

  it('stops on close code 4401 and reports the lost session', () => {
    const { result, onUnauthorized } = mount();
    step(() => FakeWebSocket.latest().acceptConnection());
    step(() => FakeWebSocket.latest().serverClose(4401));

    expect(result.current.state).toBe('closed-unauthorized');
    expect(onUnauthorized).toHaveBeenCalledTimes(1);
    step(() => vi.advanceTimersByTime(60_000));
    expect(FakeWebSocket.instances).toHaveLength(1);
  });

  it('logs the server’s refusals instead of hiding them', () => {
    const logged = vi.spyOn(console, 'error').mockImplementation(() => {});
    const { result } = mount();
    step(() => FakeWebSocket.latest().acceptConnection());
    step(() => FakeWebSocket.latest().receive({ type: 'error', detail: 'unknown topic(s): nope' }));
    expect(logged).toHaveBeenCalledWith('telemetry: the server refused a message:', 'unknown topic(s): nope');
    expect(result.current.state).toBe('open');
  });

  it('counts failed attempts until a socket opens', () => {
    const { result } = mount();
    step(() => FakeWebSocket.latest().serverClose(1006));
    step(() => vi.advanceTimersByTime(500));
    step(() => FakeWebSocket.latest().serverClose(1006));
    expect(result.current.failedAttempts).toBe(2);
    step(() => vi.advanceTimersByTime(1000));
    step(() => FakeWebSocket.latest().acceptConnection());
    expect(result.current.failedAttempts).toBe(0);
  });

  it('replaces a socket that falls silent', () => {
    const { result } = mount();
    const socket = FakeWebSocket.latest();
    step(() => socket.acceptConnection());
    step(() => vi.advanceTimersByTime(DEFAULT_RECONNECT_POLICY.silenceTimeoutMs - 1000));
    step(() => socket.receive({ type: 'heartbeat', server_time: '2026-11-21T10:00:09+00:00', clients: 1 }));
    step(() => vi.advanceTimersByTime(DEFAULT_RECONNECT_POLICY.silenceTimeoutMs - 1));
    expect(result.current.state).toBe('open');

    step(() => vi.advanceTimersByTime(1));
    expect(socket.closedByClient?.code).toBe(4000);
    expect(result.current.state).toBe('reconnecting');
    step(() => vi.advanceTimersByTime(500));
    expect(FakeWebSocket.instances).toHaveLength(2);
  });

  it('gives up on a connection attempt that hangs', () => {
    const { result } = mount();
    step(() => vi.advanceTimersByTime(DEFAULT_RECONNECT_POLICY.silenceTimeoutMs));
    expect(FakeWebSocket.latest().closedByClient?.code).toBe(4000);
    expect(result.current.state).toBe('reconnecting');
  });

  it('closes the socket and stops reconnecting when unmounted', () => {
    const { unmount } = mount();
    const socket = FakeWebSocket.latest();
    step(() => socket.acceptConnection());
    unmount();
    expect(socket.closedByClient?.code).toBe(1000);
    step(() => vi.advanceTimersByTime(60_000));
    expect(FakeWebSocket.instances).toHaveLength(1);
  });
});

describe('useTelemetryTopic', () => {
  it('subscribes to its topic and hears only that topic’s events', () => {
    const heard: string[] = [];
    function JobsLog() {
      useTelemetryTopic<{ id: number }>('jobs', (event) => heard.push(`${event.topic} ${event.payload.id}`));
      return <p>listening</p>;
    }
    render(
      <TelemetryProvider onUnauthorized={vi.fn()}>
        <JobsLog />
      </TelemetryProvider>,
    );
    expect(screen.getByText('listening')).toBeInTheDocument();
    const socket = FakeWebSocket.latest();
    step(() => socket.acceptConnection());
    expect(socket.sent).toEqual([{ type: 'subscribe', topics: ['system', 'jobs'] }]);

    step(() => socket.receive({ type: 'event', topic: 'kernels', payload: { id: 7 } }));
    step(() => socket.receive({ type: 'event', topic: 'jobs', payload: { id: 3 } }));
    expect(heard).toEqual(['jobs 3']);
  });
});

describe('reconnectDelay', () => {
  it('doubles from the initial delay and stops at the ceiling', () => {
    const delays = [0, 1, 2, 3, 4, 5, 6].map((n) => reconnectDelay(DEFAULT_RECONNECT_POLICY, n));
    expect(delays).toEqual([500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
  });
});
