import { screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { at, renderLive } from '../dashboard/testing';
import { ConsciousnessPanel } from './ConsciousnessPanel';

const thresholds = {
  phi: [
    { name: 'geometric', value: 0.45 },
    { name: 'breakdown', value: 0.8 },
  ],
  kappa: [{ name: 'TACKING', value: 20 }],
};

function reading(step: number, phi: number, kappa: number, loss: number | null = 5) {
  return {
    kind: 'training.reading',
    time: at(step),
    job: 3,
    kernel: null,
    step,
    phi,
    kappa,
    regime: phi < 0.45 ? 'linear' : 'geometric',
    phase: 'FOAM',
    n_tokens: 1024,
    loss,
  };
}

describe('ConsciousnessPanel', () => {
  it('says it is loading until the history arrives, then that nothing trained yet', () => {
    const { send, socket } = renderLive(<ConsciousnessPanel />);
    expect(socket.sent).toContainEqual({ type: 'subscribe', topics: ['system', 'consciousness'] });
    expect(screen.getByText(/Loading Φ and κ history/)).toBeInTheDocument();
    send('consciousness', { kind: 'consciousness.history', readings: [], thresholds });
    expect(screen.getByText(/No training has reported Φ yet/)).toBeInTheDocument();
  });

  it('shows the latest reading of the history with its thresholds, then follows live readings', () => {
    const { send } = renderLive(<ConsciousnessPanel />);
    send('consciousness', {
      kind: 'consciousness.history',
      readings: [reading(10, 0.2, 8, 6.5), reading(20, 0.3, 9, 6.0)],
      thresholds,
    });
    expect(screen.getByTestId('phi-value')).toHaveTextContent('0.300');
    expect(screen.getByTestId('kappa-value')).toHaveTextContent('9.0');
    expect(screen.getByTestId('regime-value')).toHaveTextContent('linear');
    expect(screen.getByTestId('phase-value')).toHaveTextContent('FOAM');
    expect(screen.getByTestId('loss-value')).toHaveTextContent('6.000');
    expect(screen.getByTestId('perplexity-value')).toHaveTextContent(Math.exp(6).toFixed(1));
    expect(screen.getByText('geometric 0.45')).toBeInTheDocument();
    expect(screen.getByText('TACKING 20')).toBeInTheDocument();
    expect(screen.getByRole('img', { name: /Φ over time: 2 points/ })).toBeInTheDocument();

    send('consciousness', reading(30, 0.52, 11, 5.5));
    expect(screen.getByTestId('phi-value')).toHaveTextContent('0.520');
    expect(screen.getByTestId('regime-value')).toHaveTextContent('geometric');
    expect(screen.getByTestId('reading-source')).toHaveTextContent('job 3 · step 30');
    expect(screen.getByRole('img', { name: /Φ over time: 3 points, latest 0.52/ })).toBeInTheDocument();
  });

  it('shows a dash for a loss the reading does not carry', () => {
    const { send } = renderLive(<ConsciousnessPanel />);
    send('consciousness', { kind: 'consciousness.history', readings: [], thresholds });
    send('consciousness', reading(1, 0.1, 3, null));
    expect(screen.getByTestId('loss-value')).toHaveTextContent('—');
    expect(screen.getByTestId('perplexity-value')).toHaveTextContent('—');
  });
});
