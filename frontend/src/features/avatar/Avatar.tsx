import { useContext, useState, useSyncExternalStore } from 'react';
import type { Reading } from '../consciousness/types';
import { EmptyState, Panel } from '../dashboard/Panel';
import { TelemetryContext, useTelemetryTopic } from '../telemetry/useTelemetry';
import { avatarLook, IDLE_PERIOD_S, type AvatarLook, type Expression } from './avatarMapping';

/** How often a second the moving figure changes (its animations are stepped). */
export const STEPS_PER_S = 8;
import './avatar.css';

const FINISHED = new Set(['completed', 'failed', 'cancelled']);

interface JobRow {
  id: number;
  status: string;
  finished_at?: string | null;
}

interface JobsState {
  loaded: boolean;
  running: Map<number, number | null>; // job → its last tokens/s
  lastFinishedFailed: boolean;
}

type JobsPayload =
  | { kind: 'jobs.history'; jobs: JobRow[] }
  | { kind: 'job.status'; job: number; status: string }
  | { kind: 'job.progress'; job: number; tokens_per_s?: number | null }
  | { kind: string };

/** The socket's state only (not the heartbeat), so the figure does not re-render every second. */
function useConnected(): boolean {
  const connection = useContext(TelemetryContext);
  if (!connection) throw new Error('useConnected must be used inside <TelemetryProvider>');
  return useSyncExternalStore(connection.watch, () => connection.getSnapshot().state === 'open');
}

const reducedMotionQuery = '(prefers-reduced-motion: reduce)';

function useReducedMotion(): boolean {
  return useSyncExternalStore(
    (changed) => {
      const media = window.matchMedia?.(reducedMotionQuery);
      media?.addEventListener?.('change', changed);
      return () => media?.removeEventListener?.('change', changed);
    },
    () => window.matchMedia?.(reducedMotionQuery).matches ?? false,
  );
}

/** An animated figure whose colour, glow, expression and motion follow the live state. */
export function AvatarPanel() {
  const connected = useConnected();
  const reducedMotion = useReducedMotion();
  const [reading, setReading] = useState<Reading | null>(null);
  const [jobs, setJobs] = useState<JobsState>({
    loaded: false,
    running: new Map(),
    lastFinishedFailed: false,
  });

  useTelemetryTopic<{ kind: string; readings?: Reading[] }>('consciousness', ({ payload }) => {
    if (payload.kind === 'consciousness.history') setReading(payload.readings?.at(-1) ?? null);
    else if (payload.kind === 'training.reading') setReading(payload as unknown as Reading);
  });

  useTelemetryTopic<JobsPayload>('jobs', ({ payload }) => {
    if (payload.kind === 'jobs.history' && 'jobs' in payload) {
      const finished = payload.jobs
        .filter((j) => FINISHED.has(j.status) && j.finished_at)
        .sort((a, b) => String(a.finished_at).localeCompare(String(b.finished_at)));
      setJobs({
        loaded: true,
        running: new Map(payload.jobs.filter((j) => j.status === 'running').map((j) => [j.id, null])),
        lastFinishedFailed: finished.at(-1)?.status === 'failed',
      });
    } else if (payload.kind === 'job.status' && 'status' in payload) {
      const { job, status } = payload;
      setJobs((s) => {
        const running = new Map(s.running);
        if (status === 'running') running.set(job, running.get(job) ?? null);
        else running.delete(job);
        return {
          loaded: s.loaded,
          running,
          lastFinishedFailed: FINISHED.has(status) ? status === 'failed' : s.lastFinishedFailed,
        };
      });
    } else if (payload.kind === 'job.progress' && 'job' in payload) {
      const { job } = payload;
      const rate = 'tokens_per_s' in payload ? (payload.tokens_per_s ?? null) : null;
      setJobs((s) => {
        if (s.running.get(job) === rate && s.running.has(job)) return s;
        const running = new Map(s.running);
        running.set(job, rate);
        return { ...s, running };
      });
    }
  });

  const rates = [...jobs.running.values()].filter((v): v is number => typeof v === 'number');
  const look = avatarLook({
    connected,
    regime: reading?.regime || null,
    phi: reading?.phi ?? null,
    runningJobs: jobs.running.size,
    tokensPerS: rates.length ? rates.reduce((a, b) => a + b, 0) : null,
    lastJobFailed: jobs.lastFinishedFailed,
  });

  return (
    <Panel id="avatar" title="Avatar" className="avatar">
      <AvatarFigure look={look} still={reducedMotion} />
      {connected && !jobs.loaded ? (
        <EmptyState>Waiting for the job list…</EmptyState>
      ) : (
        <p className="avatar__caption dash-small" data-testid="avatar-caption">
          {look.description}
        </p>
      )}
    </Panel>
  );
}

const MOUTHS: Record<Expression, string> = {
  asleep: 'M45 63 Q50 65 55 63',
  worried: 'M39 65 Q50 56 61 65',
  strained: 'M38 62 L42 59 L46 62 L50 59 L54 62 L58 59 L62 62',
  content: 'M37 58 Q50 71 63 58',
  calm: 'M40 60 Q50 65 60 60',
  neutral: 'M41 61 L59 61',
};

export function AvatarFigure({ look, still }: { look: AvatarLook; still: boolean }) {
  const animated = look.periodS !== null && !still;
  // Stepped, not continuous: the figure changes STEPS_PER_S times a second, so it leaves the
  // browser idle between steps (a continuous animation costs every frame on a software-rendered
  // machine: see docs/dashboard.md, "Frame rate").
  const period = look.periodS ?? IDLE_PERIOD_S;
  const breathSteps = {
    animationTimingFunction: `steps(${Math.max(2, Math.round((period / 2) * STEPS_PER_S))})`,
  };
  const orbitSteps = {
    animationTimingFunction: `steps(${Math.max(8, Math.round(period * 4 * STEPS_PER_S))})`,
  };
  const style = {
    ['--avatar-colour' as string]: look.colour,
    ['--avatar-period' as string]: `${look.periodS ?? 0}s`,
    ['--avatar-glow' as string]: String(0.15 + 0.75 * look.glow),
  };
  // Three stacked SVGs, each animated as a whole (transform and opacity on the element itself), so
  // the browser's compositor moves them without repainting anything: a steady frame rate.
  return (
    <div
      className={`avatar__figure${animated ? ' avatar__figure--moving' : ''}`}
      role="img"
      aria-label={look.description}
      data-testid="avatar-figure"
      data-expression={look.expression}
      data-colour={look.colour}
      data-period={look.periodS ?? ''}
      style={style}
    >
      <svg className="avatar__layer avatar__halo" viewBox="0 0 100 100" aria-hidden="true">
        <defs>
          <radialGradient id="avatar-halo">
            <stop offset="40%" stopColor={look.colour} stopOpacity="0.9" />
            <stop offset="100%" stopColor={look.colour} stopOpacity="0" />
          </radialGradient>
        </defs>
        <circle cx="50" cy="50" r={30 + 18 * look.glow} fill="url(#avatar-halo)" />
      </svg>
      <svg
        className="avatar__layer avatar__orbit"
        viewBox="0 0 100 100"
        aria-hidden="true"
        style={orbitSteps}
      >
        {[0, 120, 240].map((angle) => (
          <circle
            key={angle}
            className="avatar__moon"
            cx={50 + 42 * Math.cos((angle * Math.PI) / 180)}
            cy={50 + 42 * Math.sin((angle * Math.PI) / 180)}
            r="2.4"
          />
        ))}
      </svg>
      <div className="avatar__layer avatar__body" style={{ transform: `scale(${look.scale})` }}>
        <svg
          className="avatar__layer avatar__breath"
          viewBox="0 0 100 100"
          aria-hidden="true"
          style={breathSteps}
        >
          <circle className="avatar__face" cx="50" cy="50" r="28" />
          {look.expression === 'asleep' ? (
            <>
              <path className="avatar__line" d="M35 46 Q40 50 45 46" />
              <path className="avatar__line" d="M55 46 Q60 50 65 46" />
            </>
          ) : (
            <>
              <circle className="avatar__eye" cx="40" cy="45" r="3.2" />
              <circle className="avatar__eye" cx="60" cy="45" r="3.2" />
            </>
          )}
          {(look.expression === 'worried' || look.expression === 'strained') && (
            <>
              <path className="avatar__line" d="M34 38 L45 35" />
              <path className="avatar__line" d="M55 35 L66 38" />
            </>
          )}
          <path className="avatar__line" d={MOUTHS[look.expression]} data-testid="avatar-mouth" />
        </svg>
      </div>
    </div>
  );
}
