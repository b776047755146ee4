import { useState, type FormEvent } from 'react';
import { controlJob, reprioritiseJob, type JobAction } from './jobsApi';
import { formatEta, formatNumber, formatPercent, isFinished } from './jobState';
import { PriorityInput } from './PriorityInput';
import type { Job, JobEvaluation, KernelEvaluation } from './types';

const KIND_LABELS: Record<string, string> = {
  coordizer: 'Coordizer',
  pretrain: 'Pretrain (trunk)',
  adapter: 'Adapter (kernels)',
};

function change(value: number | null | undefined): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—';
  return `${value >= 0 ? '+' : '−'}${Math.abs(value * 100).toFixed(1)} %`;
}

/** `7.13 → 5.2` for a loss before and after. */
function losses(before: number | null | undefined, after: number | null | undefined): string {
  return `${formatNumber(before)} → ${formatNumber(after)}`;
}

/** One kernel's outcome: promoted or not, held-out figures first (held-in is secondary). */
function KernelOutcome({ kernel: k }: { kernel: KernelEvaluation }) {
  const h = k.heldout;
  return (
    <p className="job__reason" data-testid={`job-kernel-${k.kernel}`}>
      Kernel {k.kernel} <strong>{k.promoted ? 'promoted' : 'not promoted'}</strong>:{' '}
      {h.own_is_heldout ? 'held-out' : 'held-in'} loss {losses(h.own_before, h.own_after)}, general held-out
      as served {losses(h.served_before ?? h.general_before, h.served_after ?? h.general_after)} (
      {change(h.served_change ?? h.general_change)})
      {typeof h.served_change === 'number' && (
        <span className="muted"> (with it on all general text: {change(h.general_change)})</span>
      )}
      {k.promoted && typeof k.radius === 'number' && `, routing radius ${formatNumber(k.radius)}`}
      {!k.promoted && <span className="muted"> — {k.reason}</span>}{' '}
      <span className="muted">(held-in {losses(h.heldin_before, h.heldin_after)})</span>
    </p>
  );
}

function hasEvaluation(evaluation: JobEvaluation | undefined): evaluation is JobEvaluation {
  return Boolean(evaluation?.kernels?.length);
}

interface Props {
  job: Job;
  canControl: boolean;
  onChanged: (job: Job) => void;
  compact?: boolean;
}

/** One job of the queue: status, live progress, measurements and (for admins) its controls. */
export function JobRow({ job, canControl, onChanged, compact = false }: Props) {
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [priority, setPriority] = useState(String(job.priority));
  const finished = isFinished(job);
  const label = `Job ${job.id}`;
  const kernels = job.target_kernels ?? [];

  async function run(name: string, call: () => Promise<Job>) {
    setBusy(name);
    setError(null);
    try {
      const row = await call();
      onChanged(row);
      setPriority(String(row.priority));
    } catch (failure) {
      setError(`${name} failed: ${(failure as Error).message}`);
    } finally {
      setBusy(null);
    }
  }

  function act(action: JobAction) {
    if (action === 'cancel') {
      const ok = window.confirm(
        `Cancel job #${job.id} (${job.kind})? A running job stops at its next step and keeps its last checkpoint; a cancelled job cannot be resumed.`,
      );
      if (!ok) return;
    }
    const name = { pause: 'Pause', resume: 'Resume', cancel: 'Cancel' }[action];
    void run(name, () => controlJob(job.id, action));
  }

  function reprioritise(event: FormEvent) {
    event.preventDefault();
    const value = Number(priority);
    if (priority.trim() === '' || !Number.isInteger(value) || value < -100 || value > 100) {
      setError('Priority must be a whole number from −100 to 100.');
      return;
    }
    void run('Reprioritise', () => reprioritiseJob(job.id, value));
  }

  return (
    <li
      className={`job job--${job.status}`}
      id={`job-${job.id}`}
      data-testid={`job-${job.id}`}
      aria-label={label}
    >
      <div className="job__head">
        <span className="job__title">
          #{job.id} {KIND_LABELS[job.kind] ?? job.kind}
        </span>
        <span className={`job__status job__status--${job.status}`} data-testid="job-status">
          {job.status}
        </span>
        <span className="muted">priority {job.priority}</span>
      </div>

      <div className="job__progress">
        <progress
          value={Math.min(1, Math.max(0, job.progress || 0))}
          max={1}
          aria-label={`${label} progress`}
          aria-valuetext={formatPercent(job.progress)}
        />
        <span data-testid="job-percent">{formatPercent(job.progress)}</span>
        <span className="muted" data-testid="job-steps">
          step {job.step} / {job.total_steps || '?'}
        </span>
        {job.status === 'running' && <span data-testid="job-eta">ETA {formatEta(job.eta_s)}</span>}
      </div>

      {!compact || job.status === 'running' ? (
        <dl className="job__facts">
          <div>
            <dt>Device</dt>
            <dd>{job.device || '—'}</dd>
          </div>
          {hasEvaluation(job.evaluation) && (
            <div>
              <dt>Held-out loss</dt>
              <dd data-testid="job-heldout">{losses(job.evaluation.own_before, job.evaluation.own_after)}</dd>
            </div>
          )}
          <div>
            <dt>{hasEvaluation(job.evaluation) ? 'Training loss' : 'Loss'}</dt>
            <dd data-testid="job-loss">{formatNumber(job.metrics?.loss, 4)}</dd>
          </div>
          <div>
            <dt>Tokens/s</dt>
            <dd>{formatNumber(job.metrics?.tokens_per_s, 0)}</dd>
          </div>
          {job.kind === 'adapter' && (
            <div>
              <dt>Kernels</dt>
              <dd data-testid="job-kernels">
                {kernels.length ? kernels.join(', ') : '—'}
                {typeof job.metrics?.kernel === 'number' && ` (now ${job.metrics.kernel})`}
              </dd>
            </div>
          )}
          {!compact && (
            <div>
              <dt>Queued by</dt>
              <dd>{job.created_by ?? 'the system'}</dd>
            </div>
          )}
        </dl>
      ) : null}

      {(job.evaluation?.kernels ?? []).map((k) => (
        <KernelOutcome key={k.kernel} kernel={k} />
      ))}

      {job.status === 'queued' && job.after ? (
        <p className="job__reason muted">Runs once job #{job.after} has completed.</p>
      ) : null}
      {job.status_reason && <p className="job__reason muted">{job.status_reason}</p>}
      {job.error && (
        <p className="job__error" data-testid="job-error">
          {job.error_kind === 'crash' ? 'Crashed: ' : 'Failed: '}
          {job.error}
        </p>
      )}

      {canControl && !finished && (
        <div className="job__controls">
          {(job.status === 'queued' || job.status === 'running') && (
            <button type="button" className="button" disabled={busy !== null} onClick={() => act('pause')}>
              Pause
            </button>
          )}
          {job.status === 'paused' && (
            <button type="button" className="button" disabled={busy !== null} onClick={() => act('resume')}>
              Resume
            </button>
          )}
          <button type="button" className="button" disabled={busy !== null} onClick={() => act('cancel')}>
            Cancel
          </button>
          <form className="job__priority" noValidate onSubmit={reprioritise}>
            <label>
              Priority
              <PriorityInput value={priority} onValue={setPriority} aria-label={`${label} priority`} />
            </label>
            <button type="submit" className="button" disabled={busy !== null}>
              Set priority
            </button>
          </form>
        </div>
      )}
      {error && (
        <p className="job__error" role="alert">
          {error}
        </p>
      )}
    </li>
  );
}
