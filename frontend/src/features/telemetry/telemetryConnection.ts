// The one websocket to `/ws/telemetry/`: connection state, backoff, subscriptions, listeners.
// React reads it through `useTelemetry` (useSyncExternalStore); nothing else opens a socket.

export type TelemetryState = 'connecting' | 'open' | 'reconnecting' | 'closed-unauthorized';

/** The server closes with this code when the socket has no signed-in session. */
export const UNAUTHORIZED_CLOSE_CODE = 4401;
/** Our own close code when the server stopped talking (no heartbeat) and we reconnect. */
export const SILENT_SERVER_CLOSE_CODE = 4000;

export interface ReconnectPolicy {
  /** Delay before the first reconnect attempt. */
  initialDelayMs: number;
  /** Each failed attempt multiplies the delay by this factor… */
  factor: number;
  /** …up to this ceiling. A successful open resets it to `initialDelayMs`. */
  maxDelayMs: number;
  /** A socket that opens or receives nothing for this long is presumed dead and replaced. */
  silenceTimeoutMs: number;
}

/** The server heartbeats every second, so ten seconds of silence means the link is gone. */
export const DEFAULT_RECONNECT_POLICY: ReconnectPolicy = {
  initialDelayMs: 500,
  factor: 2,
  maxDelayMs: 10_000,
  silenceTimeoutMs: 10_000,
};

export interface Heartbeat {
  /** ISO 8601 time on the server when it sent the heartbeat. */
  serverTime: string;
  /** Telemetry sockets connected to the server at that moment. */
  clients: number;
}

export interface TelemetryEvent<P = unknown> {
  topic: string;
  payload: P;
}

export type TelemetryListener = (event: TelemetryEvent) => void;

/** What the server sends; anything else is ignored (with a warning) so newer servers keep working. */
export type ServerMessage =
  | { type: 'hello'; user: string; topics: string[] }
  | { type: 'heartbeat'; server_time: string; clients: number }
  | { type: 'subscribed'; topics: string[] }
  | { type: 'event'; topic: string; payload: unknown }
  | { type: 'error'; detail: string };

export interface TelemetrySnapshot {
  state: TelemetryState;
  /** The last heartbeat received, kept across reconnects so the last known time stays visible. */
  heartbeat: Heartbeat | null;
  /** The username the server greeted this socket with. */
  user: string | null;
  /** Topics the server last confirmed (hello or subscribed). */
  topics: readonly string[];
  /** Closes since the last successful open (0 while open). */
  failedAttempts: number;
  /** When reconnecting: milliseconds until the next attempt. */
  retryDelayMs: number | null;
}

export interface TelemetryConnectionOptions {
  url: string;
  /** Topics to (re)subscribe to on every open, in addition to those passed to `subscribe`. */
  topics?: readonly string[];
  policy?: ReconnectPolicy;
}

export function telemetryUrl(location: Pick<Location, 'protocol' | 'host'> = window.location): string {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  return `${scheme}://${location.host}/ws/telemetry/`;
}

export function reconnectDelay(policy: ReconnectPolicy, failedAttempts: number): number {
  return Math.min(policy.initialDelayMs * policy.factor ** failedAttempts, policy.maxDelayMs);
}

function parseMessage(data: unknown): ServerMessage | null {
  if (typeof data !== 'string') return null;
  try {
    const message = JSON.parse(data) as { type?: unknown };
    return message && typeof message.type === 'string' ? (message as ServerMessage) : null;
  } catch {
    return null;
  }
}

export class TelemetryConnection {
  private readonly url: string;
  private readonly policy: ReconnectPolicy;
  private readonly wantedTopics: Set<string>;
  private readonly listeners = new Map<string, Set<TelemetryListener>>();
  private readonly watchers = new Set<() => void>();

  private socket: WebSocket | null = null;
  private retryTimer: ReturnType<typeof setTimeout> | null = null;
  private silenceTimer: ReturnType<typeof setTimeout> | null = null;
  private running = false;
  private snapshot: TelemetrySnapshot = {
    state: 'connecting',
    heartbeat: null,
    user: null,
    topics: [],
    failedAttempts: 0,
    retryDelayMs: null,
  };

  constructor(options: TelemetryConnectionOptions) {
    this.url = options.url;
    this.policy = options.policy ?? DEFAULT_RECONNECT_POLICY;
    this.wantedTopics = new Set(options.topics ?? []);
  }

  /** Opens the socket. Safe to call again after `stop()` (React StrictMode mounts twice). */
  start = (): void => {
    if (this.running) return;
    this.running = true;
    this.update({ state: 'connecting', failedAttempts: 0, retryDelayMs: null });
    this.connect();
  };

  /** Closes the socket for good and cancels any pending reconnect. */
  stop = (): void => {
    this.running = false;
    this.clearTimers();
    const socket = this.socket;
    this.socket = null;
    if (socket && socket.readyState < WebSocket.CLOSING) socket.close(1000, 'client stopped');
  };

  /**
   * Asks the server for these topics now (if open) and again after every reconnect. The server
   * answers each topic asked for with its recent history, so a listener that arrives after the
   * topic was first wanted (a panel mounted again) asks again and gets the history too.
   */
  subscribe = (topics: readonly string[]): void => {
    if (topics.length === 0) return;
    topics.forEach((topic) => this.wantedTopics.add(topic));
    this.sendSubscribe(topics);
  };

  /** Calls `listener` for every event on `topic`; returns the function that removes it. */
  addListener = (topic: string, listener: TelemetryListener): (() => void) => {
    let set = this.listeners.get(topic);
    if (!set) this.listeners.set(topic, (set = new Set()));
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0) this.listeners.delete(topic);
    };
  };

  getSnapshot = (): TelemetrySnapshot => this.snapshot;

  /** For `useSyncExternalStore`: `watcher` runs after every snapshot change. */
  watch = (watcher: () => void): (() => void) => {
    this.watchers.add(watcher);
    return () => this.watchers.delete(watcher);
  };

  private connect(): void {
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => this.handleOpen(socket);
    socket.onmessage = (message) => this.handleMessage(socket, message);
    socket.onclose = (close) => this.handleClose(socket, close);
    // An error is always followed by a close event, which does the reconnecting.
    socket.onerror = null;
    this.armSilenceTimer();
  }

  private handleOpen(socket: WebSocket): void {
    if (socket !== this.socket) return;
    this.update({ state: 'open', failedAttempts: 0, retryDelayMs: null });
    this.sendSubscribe();
    this.armSilenceTimer();
  }

  private handleMessage(socket: WebSocket, message: MessageEvent): void {
    if (socket !== this.socket) return;
    this.armSilenceTimer();
    const parsed = parseMessage(message.data);
    if (!parsed) {
      console.warn('telemetry: ignoring a frame that is not a JSON message with a type', message.data);
      return;
    }
    switch (parsed.type) {
      case 'hello':
        this.update({ user: parsed.user, topics: parsed.topics });
        return;
      case 'heartbeat':
        this.update({ heartbeat: { serverTime: parsed.server_time, clients: parsed.clients } });
        return;
      case 'subscribed':
        this.update({ topics: parsed.topics });
        return;
      case 'error':
        // The server refused something we sent (say, an unknown topic): a bug to see, not hide.
        console.error('telemetry: the server refused a message:', parsed.detail);
        return;
      case 'event':
        this.listeners.get(parsed.topic)?.forEach((listener) => {
          listener({ topic: parsed.topic, payload: parsed.payload });
        });
        return;
      default:
        console.warn('telemetry: ignoring unknown message type', (parsed as { type: string }).type);
    }
  }

  private handleClose(socket: WebSocket, close: CloseEvent): void {
    if (socket !== this.socket) return;
    this.socket = null;
    this.clearTimers();
    if (!this.running) return;

    if (close.code === UNAUTHORIZED_CLOSE_CODE) {
      this.running = false;
      // No reconnect: without a session the server would refuse every attempt.
      this.update({ state: 'closed-unauthorized', retryDelayMs: null });
      return;
    }

    const failedAttempts = this.snapshot.failedAttempts;
    const delay = reconnectDelay(this.policy, failedAttempts);
    this.update({ state: 'reconnecting', failedAttempts: failedAttempts + 1, retryDelayMs: delay });
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      if (this.running) this.connect();
    }, delay);
  }

  /** Sends a subscribe for `topics` (default: every wanted topic, as on each open). */
  private sendSubscribe(topics: readonly string[] = [...this.wantedTopics]): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN || topics.length === 0) return;
    socket.send(JSON.stringify({ type: 'subscribe', topics: [...new Set(topics)] }));
  }

  private armSilenceTimer(): void {
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    const socket = this.socket;
    this.silenceTimer = setTimeout(() => {
      this.silenceTimer = null;
      if (socket !== this.socket || !socket) return;
      // close() on a dead link may take long to fire `close`; reconnect as if it had.
      socket.close(SILENT_SERVER_CLOSE_CODE, 'no frame from the server');
      this.handleClose(socket, new CloseEvent('close', { code: SILENT_SERVER_CLOSE_CODE }));
    }, this.policy.silenceTimeoutMs);
  }

  private clearTimers(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.silenceTimer) clearTimeout(this.silenceTimer);
    this.retryTimer = null;
    this.silenceTimer = null;
  }

  private update(change: Partial<TelemetrySnapshot>): void {
    this.snapshot = { ...this.snapshot, ...change };
    this.watchers.forEach((watcher) => watcher());
  }
}
