import { useTelemetry } from '../telemetry/useTelemetry';
import type { TelemetryState } from '../telemetry/telemetryConnection';

const STATE_LABEL: Record<TelemetryState, string> = {
  connecting: 'Connecting',
  open: 'Live',
  reconnecting: 'Reconnecting',
  'closed-unauthorized': 'Signed out',
};

const utcClock = new Intl.DateTimeFormat('en-GB', {
  timeZone: 'UTC',
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hour12: false,
});

/**
 * `10:00:00 UTC` from the server's ISO time. Python writes microseconds, which not every
 * engine's Date parses, so the fraction is cut to milliseconds first.
 */
export function formatServerTime(iso: string): string {
  const date = new Date(iso.replace(/(\.\d{3})\d+/, '$1'));
  return Number.isNaN(date.getTime()) ? iso : `${utcClock.format(date)} UTC`;
}

/** Connection state, server time of the last heartbeat and connected clients, as the server sent them. */
export function TelemetryIndicator() {
  const { state, heartbeat, retryDelayMs } = useTelemetry();
  const retry =
    state === 'reconnecting' && retryDelayMs !== null
      ? ` (retry in ${(retryDelayMs / 1000).toFixed(1)} s)`
      : '';

  return (
    <section className="telemetry" aria-label="Live telemetry">
      <span
        className={`telemetry__state telemetry__state--${state}`}
        role="status"
        data-testid="telemetry-state"
      >
        <span className="telemetry__dot" aria-hidden="true" />
        {STATE_LABEL[state]}
        {retry}
      </span>
      <dl className="telemetry__facts">
        <div>
          <dt>Server time</dt>
          <dd data-testid="server-time">
            {heartbeat ? (
              <time dateTime={heartbeat.serverTime}>{formatServerTime(heartbeat.serverTime)}</time>
            ) : (
              '—'
            )}
          </dd>
        </div>
        <div>
          <dt>Clients</dt>
          <dd data-testid="client-count">{heartbeat ? heartbeat.clients : '—'}</dd>
        </div>
      </dl>
    </section>
  );
}
