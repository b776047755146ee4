import { render, screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { JobRow } from './JobRow';
import { applyEvent } from './jobState';
import { job } from './testing';
import type { Job, JobEvaluation } from './types';

const evaluation: JobEvaluation = {
  tolerance: 0.02,
  promoted: [57],
  not_promoted: [132],
  own_before: 7.13,
  own_after: 4.2,
  heldin_before: 7.1,
  heldin_after: 1.62,
  kernels: [
    {
      kernel: 57,
      promoted: true,
      reason: 'held-out loss 7.130 → 3.900; general held-out loss 5.000 → 5.050 (+1.0%, tolerance 2.0%)',
      heldout: {
        own_before: 7.13,
        own_after: 3.9,
        general_before: 5.0,
        general_after: 5.05,
        general_change: 0.01,
        served_before: 5.0,
        served_after: 5.01,
        served_change: 0.002,
        heldin_before: 7.1,
        heldin_after: 1.5,
        own_is_heldout: true,
      },
      radius: 1.234,
      version: '.57.v1',
      serving_before: 'the bare trunk',
    },
    {
      kernel: 132,
      promoted: false,
      reason: 'the general held-out loss 5.000 → 5.400 rose +8.0%, beyond the 2.0% tolerance',
      heldout: {
        own_before: 7.13,
        own_after: 4.5,
        general_before: 5.0,
        general_after: 5.4,
        general_change: 0.08,
        heldin_before: 7.1,
        heldin_after: 1.74,
        own_is_heldout: true,
      },
      serving_before: '.132.v9',
    },
  ],
};

const adapterJob = (overrides: Partial<Job> = {}) =>
  job({
    id: 9,
    kind: 'adapter',
    status: 'completed',
    progress: 1,
    step: 40,
    total_steps: 40,
    target_kernels: [57, 132],
    metrics: { loss: 1.55 },
    evaluation,
    ...overrides,
  });

describe('JobRow', () => {
  it('heads an adapter job with the held-out loss, and says which kernels were promoted and why not', () => {
    render(<JobRow job={adapterJob()} canControl={false} onChanged={() => {}} />);
    expect(screen.getByTestId('job-heldout')).toHaveTextContent('7.13 → 4.2');
    expect(screen.getByText('Training loss')).toBeInTheDocument();

    const promoted = screen.getByTestId('job-kernel-57');
    expect(promoted).toHaveTextContent('Kernel 57 promoted: held-out loss 7.13 → 3.9');
    expect(promoted).toHaveTextContent('general held-out as served 5 → 5.01 (+0.2 %)');
    expect(promoted).toHaveTextContent('with it on all general text: +1.0 %');
    expect(promoted).toHaveTextContent('routing radius 1.234');
    expect(within(promoted).getByText(/held-in 7\.1 → 1\.5/)).toHaveClass('muted');

    const kept = screen.getByTestId('job-kernel-132');
    expect(kept).toHaveTextContent('Kernel 132 not promoted');
    expect(kept).toHaveTextContent('(+8.0 %)');
    expect(kept).toHaveTextContent('beyond the 2.0% tolerance');
  });

  it('shows the plain loss for a job without an evaluation', () => {
    render(<JobRow job={adapterJob({ evaluation: {} })} canControl={false} onChanged={() => {}} />);
    expect(screen.queryByTestId('job-heldout')).not.toBeInTheDocument();
    expect(screen.getByText('Loss')).toBeInTheDocument();
    expect(screen.queryByTestId('job-kernel-57')).not.toBeInTheDocument();
  });

  it('takes the evaluation from the live completion event', () => {
    const running = adapterJob({ status: 'running', evaluation: {} });
    const jobs = applyEvent(new Map([[9, running]]), {
      kind: 'job.status',
      job: 9,
      job_kind: 'adapter',
      status: 'completed',
      evaluation,
    });
    render(<JobRow job={jobs.get(9)!} canControl={false} onChanged={() => {}} />);
    expect(screen.getByTestId('job-kernel-57')).toHaveTextContent('promoted');
  });
});
