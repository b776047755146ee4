import { useState } from 'react';
import { Link } from 'react-router-dom';
import { EmptyState, Panel } from './Panel';
import { clockTime, fixed } from './format';
import { useTelemetryTopic } from '../telemetry/useTelemetry';

/** An answer the model gave (`interaction.created` on the `interactions` topic). */
export interface InteractionSummary {
  id: number;
  model: string;
  kernel: number | null;
  phi: number | null;
  kappa: number | null;
  regime: string;
  completion_tokens: number | null;
  created_at: string;
}

type Payload =
  | { kind: 'interactions.history'; interactions: InteractionSummary[] }
  | (InteractionSummary & { kind?: string; event?: string })
  | { kind: string };

export const SHOWN = 5;

function newestFirst(items: InteractionSummary[]): InteractionSummary[] {
  return items.slice().sort((a, b) => b.id - a.id);
}

/** The latest answers, live, and the way to the chat page. */
export function ChatCard() {
  const [items, setItems] = useState<InteractionSummary[] | null>(null);

  useTelemetryTopic<Payload>('interactions', ({ payload }) => {
    const p = payload as Payload & { kind?: string; event?: string };
    if (p.kind === 'interactions.history' && 'interactions' in p) {
      setItems(newestFirst(p.interactions).slice(0, SHOWN));
    } else if ((p.kind ?? p.event) === 'interaction.created' && 'id' in p) {
      const item = p as InteractionSummary;
      setItems((current) =>
        newestFirst([item, ...(current ?? []).filter((i) => i.id !== item.id)]).slice(0, SHOWN),
      );
    }
  });

  return (
    <Panel id="chat-card" title="Chat" aside={<Link to="/chat">Open chat</Link>}>
      {!items ? (
        <EmptyState>Loading the latest answers…</EmptyState>
      ) : items.length === 0 ? (
        <EmptyState>
          No one has chatted yet. Answers appear here live, with the kernel that gave them.
        </EmptyState>
      ) : (
        <ul
          className="dash-list dash-link-card__items"
          aria-label="Latest answers"
          data-testid="latest-answers"
        >
          {items.map((item) => (
            <li key={item.id}>
              <span className="muted">{clockTime(item.created_at)}</span>
              <span>kernel {item.kernel ?? '—'}</span>
              <span>
                Φ {fixed(item.phi, 2)} · {item.regime || '—'}
              </span>
              <span className="muted">{item.completion_tokens ?? '—'} tokens</span>
            </li>
          ))}
        </ul>
      )}
    </Panel>
  );
}
