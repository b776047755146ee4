// The queue as the UI holds it: REST rows merged with the `jobs` topic's live events.
// Pure functions, so the merge rules are tested on their own (jobState.test.ts).

import {
  FINISHED_STATUSES,
  type Job,
  type JobProgressEvent,
  type JobStatusEvent,
  type JobsEvent,
} from './types';

export type JobMap = ReadonlyMap<number, Job>;

export const isFinished = (job: Pick<Job, 'status'>) => FINISHED_STATUSES.has(job.status);

/** A row for a job known only from an event, until its REST row arrives. */
export function placeholder(id: number, kind: string, status: string): Job {
  return {
    id,
    kind,
    status,
    status_reason: '',
    priority: 0,
    datasets: [],
    target_kernels: [],
    hyperparameters: {},
    progress: 0,
    step: 0,
    total_steps: 0,
    eta_s: null,
    metrics: {},
    device: '',
    error: '',
    created_by: null,
    created_at: new Date().toISOString(),
    started_at: null,
    finished_at: null,
  };
}

/**
 * One job's row after a REST answer (or a history event). A REST answer can be older than the
 * events heard meanwhile: a finished status is final, and progress never goes backwards.
 */
export function mergeRow(known: Job | undefined, incoming: Job): Job {
  if (!known) return incoming;
  if (isFinished(known) && !isFinished(incoming)) return { ...incoming, ...statusFields(known) };
  // A row read before a runner claimed the job (never started) is older than a `running` heard
  // since; a requeued job has started before and announces its requeue with an event of its own.
  if (known.status === 'running' && incoming.status === 'queued' && !incoming.started_at) {
    return mergeRow(known, { ...incoming, ...statusFields(known), device: known.device });
  }
  if (!isFinished(incoming) && known.step > incoming.step) {
    return {
      ...incoming,
      progress: known.progress,
      step: known.step,
      total_steps: known.total_steps,
      eta_s: known.eta_s,
      metrics: known.metrics,
    };
  }
  return incoming;
}

function statusFields(job: Job): Partial<Job> {
  const { status, status_reason, progress, step, total_steps, eta_s, error, error_kind, finished_at } = job;
  return { status, status_reason, progress, step, total_steps, eta_s, error, error_kind, finished_at };
}

export function mergeRows(jobs: JobMap, rows: readonly Job[]): JobMap {
  const next = new Map(jobs);
  for (const row of rows) next.set(row.id, mergeRow(next.get(row.id), row));
  return next;
}

function applyStatus(jobs: JobMap, event: JobStatusEvent): JobMap {
  const known = jobs.get(event.job) ?? placeholder(event.job, event.job_kind, event.status);
  const finished = FINISHED_STATUSES.has(event.status);
  const row: Job = {
    ...known,
    status: event.status,
    status_reason: event.status_reason ?? known.status_reason,
    progress: event.progress ?? known.progress,
    step: event.step ?? known.step,
    total_steps: event.total_steps ?? known.total_steps,
    device: event.device ?? known.device,
    error: event.error ?? known.error,
    error_kind: event.error_kind ?? known.error_kind,
    evaluation: event.evaluation ?? known.evaluation,
    eta_s: event.status === 'running' ? known.eta_s : null,
    finished_at: finished ? (known.finished_at ?? new Date().toISOString()) : known.finished_at,
  };
  return new Map(jobs).set(row.id, row);
}

function applyProgress(jobs: JobMap, event: JobProgressEvent): JobMap {
  const known = jobs.get(event.job) ?? placeholder(event.job, event.job_kind, 'running');
  // A late progress event must not drag a finished job (or a newer step) back.
  if (isFinished(known) || (event.step !== undefined && event.step < known.step)) return jobs;
  const metrics = { ...known.metrics };
  for (const name of ['loss', 'lr', 'grad_norm', 'tokens_per_s', 'kernel'] as const) {
    if (event[name] !== undefined) metrics[name] = event[name];
  }
  const row: Job = {
    ...known,
    // Only a runner reports progress: a job still shown as queued has been claimed meanwhile.
    status: known.status === 'queued' ? 'running' : known.status,
    progress: event.progress ?? known.progress,
    step: event.step ?? known.step,
    total_steps: event.total_steps ?? known.total_steps,
    eta_s: event.eta_s !== undefined ? event.eta_s : known.eta_s,
    device: event.device ?? known.device,
    metrics,
  };
  return new Map(jobs).set(row.id, row);
}

/** The queue after one `jobs` topic event; unknown kinds leave it as it was. */
export function applyEvent(jobs: JobMap, event: JobsEvent): JobMap {
  switch (event.kind) {
    case 'job.status':
      return applyStatus(jobs, event as JobStatusEvent);
    case 'job.progress':
      return applyProgress(jobs, event as JobProgressEvent);
    case 'jobs.history':
      return mergeRows(jobs, (event as { jobs?: Job[] }).jobs ?? []);
    default:
      return jobs;
  }
}

const ACTIVE_ORDER: Record<string, number> = { running: 0, paused: 1, queued: 2 };

/** Running, then paused, then queued (highest priority first, then oldest), then finished (newest first). */
export function orderJobs(jobs: JobMap): Job[] {
  const active = [...jobs.values()].filter((job) => !isFinished(job));
  const done = [...jobs.values()].filter(isFinished);
  active.sort(
    (a, b) =>
      (ACTIVE_ORDER[a.status] ?? 3) - (ACTIVE_ORDER[b.status] ?? 3) ||
      b.priority - a.priority ||
      a.created_at.localeCompare(b.created_at) ||
      a.id - b.id,
  );
  done.sort((a, b) => (b.finished_at ?? '').localeCompare(a.finished_at ?? '') || b.id - a.id);
  return [...active, ...done];
}

/** Seconds left, as a person reads them: "45 s", "3 min 20 s", "2 h 05 min". */
export function formatEta(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return '—';
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  const minutes = Math.floor((s % 3600) / 60);
  return `${Math.floor(s / 3600)} h ${String(minutes).padStart(2, '0')} min`;
}

/** A number with a sensible precision, or "—" when the server has none. */
export function formatNumber(value: unknown, digits = 3): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—';
  if (value !== 0 && Math.abs(value) < 10 ** -digits) return value.toExponential(1);
  return value.toLocaleString('en', { maximumFractionDigits: digits });
}

export function formatPercent(progress: number): string {
  const clamped = Math.min(1, Math.max(0, progress || 0));
  return `${Math.floor(clamped * 1000) / 10}%`;
}
