import { useId, useState } from 'react';
import { chatApi } from './chatApi';
import type { AssistantMessage, Feedback } from './types';

const dash = '—';

function fixed(value: number | null, digits: number): string {
  return value === null || value === undefined ? dash : value.toFixed(digits);
}

/** The kernel that answered: its index and role, or "trunk" when the bare trunk answered alone. */
function answeredBy(message: AssistantMessage): string {
  if (message.kernel !== null) return `${message.kernel} ${message.kernel_role}`.trim();
  return message.routed[0]?.answered_by === 'trunk' ? 'trunk' : dash;
}

/** What answered and how it went: kernel, distance, Φ/κ, regime, time to first token, speed, and
 * why that kernel answered (the route's reason). */
export function Metrics({ message }: { message: AssistantMessage }) {
  const reason = message.routed[0]?.reason;
  const items: [string, string][] = [
    ['Kernel', answeredBy(message)],
    ['Distance', fixed(message.distance, 3)],
    ['Φ', fixed(message.phi, 3)],
    ['κ', fixed(message.kappa, 1)],
    ['Regime', message.regime || dash],
    ['TTFT', message.ttft_ms === null ? dash : `${Math.round(message.ttft_ms)} ms`],
    ['Speed', message.tokens_per_s === null ? dash : `${message.tokens_per_s.toFixed(1)} tok/s`],
    ['Tokens', String(message.completion_tokens)],
  ];
  return (
    <dl className="chat-metrics" data-testid="answer-metrics" aria-label="How this answer was made">
      {items.map(([name, value]) => (
        <div key={name} className="chat-metrics__item">
          <dt>{name}</dt>
          <dd>{value}</dd>
        </div>
      ))}
      {message.done_reason === 'cancelled' && (
        <div className="chat-metrics__item">
          <dt>Status</dt>
          <dd>stopped</dd>
        </div>
      )}
      {reason && (
        <div className="chat-metrics__item chat-metrics__item--wide" data-testid="answer-route">
          <dt>Why</dt>
          <dd>{reason}</dd>
        </div>
      )}
    </dl>
  );
}

/** Thumbs up / down and "Suggest a better answer", saved on the interaction. */
export function FeedbackControls({
  message,
  onSaved,
}: {
  message: AssistantMessage;
  onSaved: (changes: Partial<AssistantMessage>) => void;
}) {
  const [saving, setSaving] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [suggesting, setSuggesting] = useState(false);
  const [suggestion, setSuggestion] = useState(message.suggested_answer);
  const [notice, setNotice] = useState<string | null>(null);
  const fieldId = useId();

  async function save(feedback: Feedback, suggested?: string) {
    setSaving(true);
    setError(null);
    setNotice(null);
    try {
      await chatApi.feedback(message.id, feedback, suggested);
      onSaved(suggested === undefined ? { feedback } : { feedback, suggested_answer: suggested });
      if (suggested !== undefined) {
        setSuggesting(false);
        setNotice('Suggestion saved.');
      }
    } catch (failure) {
      setError(`Could not save your feedback: ${(failure as Error).message}`);
    } finally {
      setSaving(false);
    }
  }

  const thumb = (value: 'up' | 'down', label: string, symbol: string) => (
    <button
      type="button"
      className="chat-feedback__thumb"
      aria-pressed={message.feedback === value}
      aria-label={label}
      title={label}
      disabled={saving}
      onClick={() => save(message.feedback === value ? '' : value)}
    >
      {symbol}
    </button>
  );

  return (
    <div className="chat-feedback">
      <div className="chat-feedback__row">
        {thumb('up', 'Good answer', '▲')}
        {thumb('down', 'Bad answer', '▼')}
        <button
          type="button"
          className="button"
          aria-expanded={suggesting}
          onClick={() => setSuggesting((open) => !open)}
        >
          Suggest a better answer
        </button>
        {notice && (
          <span role="status" className="chat-feedback__notice">
            {notice}
          </span>
        )}
      </div>
      {suggesting && (
        <form
          className="chat-feedback__form"
          onSubmit={(event) => {
            event.preventDefault();
            void save(message.feedback, suggestion);
          }}
        >
          <label htmlFor={fieldId}>A better answer</label>
          <textarea
            id={fieldId}
            value={suggestion}
            rows={4}
            onChange={(event) => setSuggestion(event.target.value)}
          />
          <div className="chat-feedback__row">
            <button type="submit" className="button button--primary" disabled={saving}>
              Save suggestion
            </button>
            <button type="button" className="button" onClick={() => setSuggesting(false)}>
              Cancel
            </button>
          </div>
        </form>
      )}
      {error && (
        <p role="alert" className="chat-error">
          {error}
        </p>
      )}
    </div>
  );
}
