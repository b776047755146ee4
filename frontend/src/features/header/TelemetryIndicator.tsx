import { useState } from 'react';
import { useTelemetry, useTelemetryTopic } from '../telemetry/useTelemetry';
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

/** What a Celery worker publishes on the `system` topic each time beat asks it to. */
interface WorkerHeartbeat {
  kind: 'worker.heartbeat';
  hostname: string;
  pid: number;
  time: string;
}

/** A worker quiet for longer than this is shown as a warning. */
export const WORKER_QUIET_S = 30;

/**
 * How long ago a worker last spoke, by the server's own clock (its heartbeat time minus the
 * worker's), so a browser with a wrong clock still reads it right.
 */
export function workerAgeSeconds(serverTime: string, workerTime: string): number | null {
  const age =
    (Date.parse(serverTime.replace(/(\.\d{3})\d+/, '$1')) -
      Date.parse(workerTime.replace(/(\.\d{3})\d+/, '$1'))) /
    1000;
  return Number.isFinite(age) ? Math.max(0, Math.round(age)) : null;
}

/** Connection state, server time of the last heartbeat, connected clients and worker liveness. */
export function TelemetryIndicator() {
  const { state, heartbeat, retryDelayMs } = useTelemetry();
  const [worker, setWorker] = useState<WorkerHeartbeat | null>(null);
  useTelemetryTopic<Partial<WorkerHeartbeat>>('system', (event) => {
    if (event.payload.kind === 'worker.heartbeat') setWorker(event.payload as WorkerHeartbeat);
  });
  const workerAge = heartbeat && worker ? workerAgeSeconds(heartbeat.serverTime, worker.time) : null;
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
        <div>
          <dt>Worker</dt>
          <dd
            data-testid="worker-seen"
            className={workerAge !== null && workerAge > WORKER_QUIET_S ? 'telemetry__warn' : undefined}
            title={
              worker ? `${worker.hostname}, pid ${worker.pid}` : 'No worker has spoken since this page opened'
            }
          >
            {workerAge === null ? 'not heard yet' : `seen ${workerAge} s ago`}
          </dd>
        </div>
      </dl>
    </section>
  );
}
