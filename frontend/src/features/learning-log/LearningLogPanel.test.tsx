import { screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { at, renderLive } from '../dashboard/testing';
import { LearningLogPanel } from './LearningLogPanel';

const event = (id: number, message: string, kind = 'guard') => ({
  kind: 'learning.event',
  id,
  event_kind: kind,
  message,
  job: 1,
  kernel: null,
  data: {},
  created_at: at(id),
});

describe('LearningLogPanel', () => {
  it('shows the history newest first and prepends live events once each', () => {
    const { send } = renderLive(<LearningLogPanel />);
    expect(screen.getByText('Loading the learning log…')).toBeInTheDocument();
    send('learning', {
      kind: 'learning.history',
      events: [event(2, 'job 1 step 20: cooldown: Φ ≥ 0.80'), event(1, 'job 1 started', 'job')],
      stats: {},
    });
    const log = screen.getByRole('log');
    expect(
      within(log)
        .getAllByRole('listitem')
        .map((li) => li.textContent),
    ).toEqual([expect.stringContaining('cooldown'), expect.stringContaining('job 1 started')]);

    send('learning', event(3, 'job 1 step 40: anchor_step: moved 0.01', 'anchor'));
    send('learning', event(3, 'job 1 step 40: anchor_step: moved 0.01', 'anchor'));
    send('learning', {
      kind: 'upload.status',
      time: at(4),
      upload: { id: 9, original_name: 'notes.md', status: 'ready', status_detail: '' },
    });
    const lines = within(log).getAllByRole('listitem');
    expect(lines).toHaveLength(4);
    expect(lines[0]).toHaveTextContent('uploadnotes.md: ready');
    expect(lines[1]).toHaveTextContent('anchorjob 1 step 40');
  });

  it('shows each promotion, non-promotion and rollback as a line of its own kind', () => {
    const { send } = renderLive(<LearningLogPanel />);
    send('learning', { kind: 'learning.history', events: [], stats: {} });
    send('learning', event(5, 'kernel 57 promoted: held-out loss 7.130 → 3.900', 'promoted'));
    send(
      'learning',
      event(6, 'kernel 57 not promoted: the general held-out loss rose +9.2%', 'not_promoted'),
    );
    send('learning', event(7, 'kernel 57 rolled back by admin to .57.v1', 'rollback'));
    const [rollback, kept, promoted] = within(screen.getByRole('log')).getAllByRole('listitem');
    expect(rollback).toHaveTextContent('rollbackkernel 57 rolled back by admin');
    expect(kept).toHaveTextContent('not promotedkernel 57 not promoted');
    expect(within(kept!).getByText('not promoted')).toHaveClass('learning-log__kind--not_promoted');
    expect(promoted).toHaveTextContent('promotedkernel 57 promoted: held-out loss 7.130 → 3.900');
  });

  it('says honestly when nothing was learned yet', () => {
    const { send } = renderLive(<LearningLogPanel />);
    send('learning', { kind: 'learning.history', events: [], stats: {} });
    expect(screen.getByText(/Nothing learned yet/)).toBeInTheDocument();
  });
});
