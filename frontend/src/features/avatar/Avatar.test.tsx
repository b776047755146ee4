import { act, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { at, renderLive } from '../dashboard/testing';
import { AvatarPanel } from './Avatar';

describe('AvatarPanel', () => {
  it('follows the regime, running jobs, a failure and the connection', () => {
    const { send, socket } = renderLive(<AvatarPanel />);
    const figure = () => screen.getByTestId('avatar-figure');
    send('jobs', { kind: 'jobs.history', jobs: [{ id: 1, status: 'completed', finished_at: at(0) }] });
    send('consciousness', { kind: 'consciousness.history', readings: [], thresholds: {} });
    expect(figure()).toHaveAttribute('data-expression', 'neutral');
    expect(figure()).toHaveAttribute('data-period', '6');

    send('jobs', { kind: 'job.status', job: 2, status: 'running' });
    send('jobs', { kind: 'job.progress', job: 2, tokens_per_s: 900 });
    send('consciousness', {
      kind: 'training.reading',
      time: at(5),
      job: 2,
      kernel: null,
      step: 10,
      phi: 0.5,
      kappa: 9,
      regime: 'geometric',
      phase: 'FOAM',
    });
    expect(figure()).toHaveAttribute('data-expression', 'content');
    expect(figure()).toHaveAttribute('data-colour', '#5bd46a');
    expect(Number(figure().getAttribute('data-period'))).toBeLessThan(3);
    expect(screen.getByTestId('avatar-caption')).toHaveTextContent('1 job running at 900 tokens/s');

    send('jobs', { kind: 'job.status', job: 2, status: 'failed' });
    expect(figure()).toHaveAttribute('data-expression', 'worried');
    expect(figure()).toHaveAttribute('data-period', '6');

    act(() => socket.serverClose(1012));
    expect(figure()).toHaveAttribute('data-expression', 'asleep');
  });
});
