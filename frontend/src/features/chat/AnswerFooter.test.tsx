import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { useState } from 'react';
import { beforeEach, describe, expect, it } from 'vitest';
import { json, stubServer } from '../../test/http';
import { FeedbackControls, Metrics } from './AnswerFooter';
import type { AssistantMessage } from './types';

const ANSWER: AssistantMessage = {
  id: 5,
  role: 'assistant',
  content: 'x',
  created_at: '2026-01-01T00:00:00Z',
  model: 'qig-constellation:latest',
  kernel: null,
  kernel_role: '',
  distance: null,
  routed: [],
  phi: null,
  kappa: null,
  regime: '',
  ttft_ms: null,
  tokens_per_s: null,
  completion_tokens: 0,
  done_reason: 'cancelled',
  feedback: '',
  suggested_answer: '',
};

function Harness() {
  const [message, setMessage] = useState(ANSWER);
  return <FeedbackControls message={message} onSaved={(changes) => setMessage({ ...message, ...changes })} />;
}

beforeEach(() => {
  document.cookie = 'csrftoken=t; path=/';
});

describe('FeedbackControls', () => {
  it('saves thumbs up and down on the interaction, pressed state shown', async () => {
    const requests = stubServer({ 'POST /api/v1/interactions/5/feedback/': () => json(200, {}) });
    render(<Harness />);
    const up = screen.getByRole('button', { name: 'Good answer' });
    const down = screen.getByRole('button', { name: 'Bad answer' });
    expect(up).toHaveAttribute('aria-pressed', 'false');
    await userEvent.click(up);
    expect(up).toHaveAttribute('aria-pressed', 'true');
    await userEvent.click(down);
    expect(down).toHaveAttribute('aria-pressed', 'true');
    expect(up).toHaveAttribute('aria-pressed', 'false');
    await userEvent.click(down); // pressed again: withdrawn
    expect(down).toHaveAttribute('aria-pressed', 'false');
    expect(requests.map((r) => r.body)).toEqual([{ feedback: 'up' }, { feedback: 'down' }, { feedback: '' }]);
    expect(requests[0]?.headers['X-CSRFToken']).toBe('t');
  });

  it('saves a suggested better answer', async () => {
    const requests = stubServer({ 'POST /api/v1/interactions/5/feedback/': () => json(200, {}) });
    render(<Harness />);
    await userEvent.click(screen.getByRole('button', { name: 'Suggest a better answer' }));
    await userEvent.type(screen.getByLabelText('A better answer'), 'Use the Fisher–Rao distance.');
    await userEvent.click(screen.getByRole('button', { name: 'Save suggestion' }));
    expect(await screen.findByRole('status')).toHaveTextContent('Suggestion saved.');
    expect(requests[0]?.body).toEqual({ feedback: '', suggested_answer: 'Use the Fisher–Rao distance.' });
  });

  it('says when saving failed', async () => {
    stubServer({
      'POST /api/v1/interactions/5/feedback/': () =>
        json(404, { detail: 'No Interaction matches the given query.' }),
    });
    render(<Harness />);
    await userEvent.click(screen.getByRole('button', { name: 'Good answer' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('No Interaction matches the given query.');
    expect(screen.getByRole('button', { name: 'Good answer' })).toHaveAttribute('aria-pressed', 'false');
  });
});

describe('Metrics', () => {
  it('shows a dash for what was not measured and marks a stopped answer', () => {
    render(<Metrics message={ANSWER} />);
    const metrics = screen.getByTestId('answer-metrics');
    expect(metrics).toHaveTextContent('Kernel—');
    expect(metrics).toHaveTextContent('TTFT—');
    expect(metrics).toHaveTextContent('Statusstopped');
    expect(screen.queryByTestId('answer-route')).toBeNull(); // stored before routes had reasons
  });

  it('says which kernel answered and why: a trained kernel within its radius', () => {
    const reason = 'kernel 57: within its radius (d 0.81 ≤ r 1.20)';
    const message: AssistantMessage = {
      ...ANSWER,
      kernel: 57,
      kernel_role: 'MEMORY',
      distance: 0.8123,
      routed: [{ kernel: 57, role: 'MEMORY', distance: 0.8123, answered_by: 'kernel', reason, radius: 1.2 }],
      done_reason: 'stop',
    };
    render(<Metrics message={message} />);
    expect(screen.getByTestId('answer-metrics')).toHaveTextContent('Kernel57 MEMORY');
    expect(screen.getByTestId('answer-metrics')).toHaveTextContent('Distance0.812');
    expect(screen.getByTestId('answer-route')).toHaveTextContent(`Why${reason}`);
  });

  it('says when the bare trunk answered because no kernel was near', () => {
    const reason = 'trunk: no kernel within r (nearest: 57 at 1.82, r 1.20)';
    const message: AssistantMessage = {
      ...ANSWER,
      routed: [
        {
          kernel: null,
          role: null,
          distance: null,
          answered_by: 'trunk',
          reason,
          radius: null,
          nearest: { kernel: 57, distance: 1.82, radius: 1.2 },
        },
      ],
      done_reason: 'stop',
    };
    render(<Metrics message={message} />);
    expect(screen.getByTestId('answer-metrics')).toHaveTextContent('Kerneltrunk');
    expect(screen.getByTestId('answer-route')).toHaveTextContent(`Why${reason}`);
  });
});
