import { screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { renderLive } from '../dashboard/testing';
import { LearningStatsPanel } from './LearningStatsPanel';

const ZERO = {
  accepted: 0,
  rejected: 0,
  correction: 0,
  repeated_query: 0,
  long_session: 0,
  unknown_tokens: 0,
  constraint: 0,
};

function history(signals: Record<string, number> | undefined) {
  return {
    kind: 'learning.history',
    events: [],
    stats: { events_last_hour: 0, events_per_hour: [0, 0], signals_last_24h: signals },
  };
}

describe('SignalCounts in the learning panel', () => {
  it('shows the signals of the last 24 h by kind and takes the counts a live signal brings', () => {
    const { send } = renderLive(<LearningStatsPanel />);
    send('learning', history({ ...ZERO, accepted: 3, correction: 1, unknown_tokens: 12 }));
    expect(screen.getByTestId('signal-accepted')).toHaveTextContent('3');
    expect(screen.getByTestId('signal-correction')).toHaveTextContent('1');
    expect(screen.getByTestId('signal-unknown_tokens')).toHaveTextContent('12');
    expect(screen.getByTestId('signal-constraint')).toHaveTextContent('0');
    expect(screen.getByTestId('signals-total')).toHaveTextContent('(16)');
    expect(screen.getByText('Repeated queries')).toBeInTheDocument();

    // A thumbs up turned down: the server's counts replace ours; it is not a learning event.
    send('learning', {
      kind: 'learning.signal',
      action: 'changed',
      id: 9,
      signal_kind: 'rejected',
      was: 'accepted',
      value: 0.5,
      kernel: 57,
      created_at: '',
      counts_last_24h: { ...ZERO, accepted: 2, rejected: 1, correction: 1, unknown_tokens: 12 },
    });
    expect(screen.getByTestId('signal-accepted')).toHaveTextContent('2');
    expect(screen.getByTestId('signal-rejected')).toHaveTextContent('1');
    expect(screen.getByTestId('signals-total')).toHaveTextContent('(16)');
    expect(screen.getByTestId('stat-events_last_hour')).toHaveTextContent('0');
  });

  it('shows no signal counts when the server sends none, and a kind it does not know by name', () => {
    const { send, unmount } = renderLive(<LearningStatsPanel />);
    send('learning', history(undefined));
    expect(screen.queryByText(/Signals, last 24 h/)).not.toBeInTheDocument();
    unmount();

    const again = renderLive(<LearningStatsPanel />);
    again.send('learning', history({ ...ZERO, praise_words: 2 }));
    expect(screen.getByTestId('signal-praise_words')).toHaveTextContent('2');
    expect(screen.getByText('praise words')).toBeInTheDocument();
  });
});
