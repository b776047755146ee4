import { useId } from 'react';
import { useSignedInUser } from '../auth/useAuth';
import { JobRow } from './JobRow';
import { isFinished, orderJobs } from './jobState';
import { QueueJobForm } from './QueueJobForm';
import { useJobs } from './useJobs';
import './jobs.css';

/** Finished jobs shown under the active ones (all of the active ones are always shown). */
const FINISHED_SHOWN = { full: 20, compact: 3 };

/**
 * The fine-tuning queue, live: every signed-in user sees it; admins pause, resume, cancel,
 * reprioritise and queue jobs. `compact` (for the dashboard) hides the queue form and shows
 * fewer finished jobs.
 */
export function QueuePanel({ compact = false }: { compact?: boolean }) {
  const titleId = useId();
  const user = useSignedInUser();
  const { jobs, loaded, error, update } = useJobs();
  const ordered = orderJobs(jobs);
  const active = ordered.filter((job) => !isFinished(job));
  const finished = ordered
    .filter(isFinished)
    .slice(0, compact ? FINISHED_SHOWN.compact : FINISHED_SHOWN.full);
  const running = active.filter((job) => job.status === 'running').length;

  return (
    <section
      className={`queue${compact ? ' queue--compact' : ''}`}
      aria-labelledby={titleId}
      data-testid="queue-panel"
    >
      <div className="queue__head">
        <h2 id={titleId}>Fine-tuning queue</h2>
        {loaded && (
          <span className="muted" data-testid="queue-summary">
            {running} running, {active.length - running} waiting, {jobs.size - active.length} finished
          </span>
        )}
      </div>
      {!user.is_staff && <p className="muted queue__note">Only admins can control jobs.</p>}
      {error && (
        <p className="queue__error" role="alert">
          {error}
        </p>
      )}
      {!loaded && !error && <p className="muted">Loading the queue…</p>}
      {loaded && jobs.size === 0 && (
        <div className="queue__empty" data-testid="queue-empty">
          <p>No jobs yet.</p>
          <p className="muted">
            The queue runs training one job at a time per device, highest priority first: the coordizer
            (tokenizer and basin coordinates), the trunk's pretraining and the kernels' adapters. On a fresh
            install the bootstrap coordizer and pretrain jobs appear here by themselves, with their progress;
            uploads queued with “train” add adapter jobs.
          </p>
        </div>
      )}
      {active.length > 0 && (
        <ol className="queue__list" aria-label="Active jobs">
          {active.map((job) => (
            <JobRow key={job.id} job={job} canControl={user.is_staff} onChanged={update} compact={compact} />
          ))}
        </ol>
      )}
      {finished.length > 0 && (
        <>
          <h3 className="queue__subhead">Recently finished</h3>
          <ol className="queue__list" aria-label="Finished jobs">
            {finished.map((job) => (
              <JobRow key={job.id} job={job} canControl={false} onChanged={update} compact={compact} />
            ))}
          </ol>
        </>
      )}
      {user.is_staff && !compact && <QueueJobForm onQueued={update} />}
    </section>
  );
}
