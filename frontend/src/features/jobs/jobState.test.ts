import { describe, expect, it } from 'vitest';
import { applyEvent, formatEta, formatNumber, formatPercent, mergeRow, orderJobs } from './jobState';
import { job } from './testing';

describe('jobState', () => {
  it('formats an ETA as a person reads it', () => {
    expect(formatEta(null)).toBe('—');
    expect(formatEta(44.6)).toBe('45 s');
    expect(formatEta(200)).toBe('3 min 20 s');
    expect(formatEta(3725)).toBe('1 h 02 min');
  });

  it('formats numbers and percentages', () => {
    expect(formatNumber(undefined)).toBe('—');
    expect(formatNumber(3.14159, 2)).toBe('3.14');
    expect(formatNumber(0.00002, 3)).toBe('2.0e-5');
    expect(formatPercent(0.4567)).toBe('45.6%');
    expect(formatPercent(2)).toBe('100%');
  });

  it('keeps a finished status and newer progress over an older REST row', () => {
    const finished = job({ id: 1, status: 'completed', progress: 1, step: 10, finished_at: 'x' });
    expect(mergeRow(finished, job({ id: 1, status: 'running', step: 5 })).status).toBe('completed');
    const ahead = job({ id: 1, status: 'running', step: 8, progress: 0.8 });
    const merged = mergeRow(ahead, job({ id: 1, status: 'running', step: 5, progress: 0.5, priority: 9 }));
    expect(merged).toMatchObject({ step: 8, progress: 0.8, priority: 9 });
  });

  it('keeps a running job running over a REST row read before it was claimed', () => {
    const claimed = job({ id: 2, status: 'running', device: 'cpu', started_at: 'now' });
    const stale = mergeRow(claimed, job({ id: 2, status: 'queued', priority: 3 }));
    expect(stale).toMatchObject({ status: 'running', device: 'cpu', priority: 3 });
    // A job that ran before and was requeued is queued again, as its row says.
    const requeued = job({ id: 2, status: 'queued', started_at: 'earlier' });
    expect(mergeRow(claimed, requeued).status).toBe('queued');
  });

  it('takes a progress event for a job still shown as queued as the news that it runs', () => {
    const jobs = new Map([[3, job({ id: 3, status: 'queued' })]]);
    const next = applyEvent(jobs, {
      kind: 'job.progress',
      job: 3,
      job_kind: 'adapter',
      step: 4,
      progress: 0.1,
    });
    expect(next.get(3)).toMatchObject({ status: 'running', step: 4, progress: 0.1 });
    const paused = new Map([[3, job({ id: 3, status: 'paused' })]]);
    const still = applyEvent(paused, { kind: 'job.progress', job: 3, job_kind: 'adapter', step: 5 });
    expect(still.get(3)?.status).toBe('paused');
  });

  it('ignores unknown event kinds and orders running, paused, queued, then finished', () => {
    const jobs = new Map([
      [1, job({ id: 1, status: 'queued', priority: 1 })],
      [2, job({ id: 2, status: 'queued', priority: 9 })],
      [3, job({ id: 3, status: 'completed', finished_at: '2026-11-21T10:00:00Z' })],
      [4, job({ id: 4, status: 'running' })],
      [5, job({ id: 5, status: 'paused' })],
      [6, job({ id: 6, status: 'failed', finished_at: '2026-11-21T11:00:00Z' })],
    ]);
    expect(applyEvent(jobs, { kind: 'something.else' })).toBe(jobs);
    expect(orderJobs(jobs).map((j) => j.id)).toEqual([4, 5, 2, 1, 6, 3]);
  });
});
