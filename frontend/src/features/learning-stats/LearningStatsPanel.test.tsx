import { screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { renderLive } from '../dashboard/testing';
import { humanise, LearningStatsPanel } from './LearningStatsPanel';

describe('LearningStatsPanel', () => {
  it('shows the measured counts and the hourly bars, and counts live events in the current hour', () => {
    const { send } = renderLive(<LearningStatsPanel />);
    expect(screen.getByText('Loading the learning statistics…')).toBeInTheDocument();
    const perHour = Array.from({ length: 24 }, (_, i) => (i === 23 ? 2 : i % 3));
    send('learning', {
      kind: 'learning.history',
      events: [],
      stats: {
        events_last_hour: 2,
        events_per_hour: perHour,
        vocabulary_size: 1024,
        vocabulary_added_last_24h: 1024,
        uploads: 3,
        chunks: 57,
        patterns_learned: 4,
      },
    });
    expect(screen.getByTestId('stat-events_last_hour')).toHaveTextContent('2');
    expect(screen.getByTestId('stat-vocabulary_size')).toHaveTextContent('1,024');
    expect(screen.getByTestId('stat-chunks')).toHaveTextContent('57');
    expect(screen.getByText('Patterns learned')).toBeInTheDocument();
    expect(screen.getByTestId('events-per-hour').querySelectorAll('rect')).toHaveLength(24);

    send('learning', { kind: 'learning.event', id: 5, event_kind: 'job', message: 'x', created_at: '' });
    expect(screen.getByTestId('stat-events_last_hour')).toHaveTextContent('3');
    expect(screen.getByTestId('events-per-hour')).toHaveAttribute(
      'aria-label',
      expect.stringMatching(/, 3$/),
    );
  });

  it('shows a dash for a count the server could not measure', () => {
    const { send } = renderLive(<LearningStatsPanel />);
    send('learning', { kind: 'learning.history', events: [], stats: { vocabulary_size: null } });
    expect(screen.getByTestId('stat-vocabulary_size')).toHaveTextContent('—');
    expect(screen.getByText('No hourly counts reported.')).toBeInTheDocument();
  });

  it('humanises unknown keys', () => {
    expect(humanise('patterns_reinforced')).toBe('Patterns reinforced');
  });
});
