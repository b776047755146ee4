import { useState } from 'react';
import { EmptyState, Panel } from '../dashboard/Panel';
import { useTelemetryTopic } from '../telemetry/useTelemetry';
import './learning-stats.css';
import { SignalCounts, type SignalCountMap, type SignalEvent } from './SignalCounts';

/** `stats` of the `learning.history` event (measured by the server; docs/dashboard.md). */
export interface LearningStats {
  events_last_hour?: number;
  events_per_hour?: number[];
  vocabulary_size?: number | null;
  vocabulary_added_last_24h?: number | null;
  chunks?: number;
  uploads?: number;
  /** Learning signals per kind, last 24 h (docs/training.md, "Learning signals"). */
  signals_last_24h?: SignalCountMap;
  [other: string]: unknown;
}

type Payload = { kind: 'learning.history'; stats?: LearningStats } | { kind: string };

const KNOWN: [key: string, label: string][] = [
  ['events_last_hour', 'Events, last hour'],
  ['vocabulary_size', 'Vocabulary'],
  ['vocabulary_added_last_24h', 'Vocabulary added, 24 h'],
  ['uploads', 'Uploads'],
  ['chunks', 'Chunks'],
];

/** `patterns_learned` → `Patterns learned`. */
export function humanise(key: string): string {
  const words = key.replace(/_/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
}

/** Counts the learning pipeline measured: events per hour (24 h), vocabulary, chunks, patterns. */
export function LearningStatsPanel() {
  const [stats, setStats] = useState<LearningStats | null>(null);

  useTelemetryTopic<Payload>('learning', ({ payload }) => {
    if (payload.kind === 'learning.history') {
      setStats((payload as { stats?: LearningStats }).stats ?? {});
    } else if (payload.kind === 'learning.event') {
      // A new event belongs to the current hour: count it where the server would.
      setStats((s) => {
        if (!s) return s;
        const hours = s.events_per_hour?.slice() ?? [];
        if (hours.length) hours[hours.length - 1] = (hours.at(-1) ?? 0) + 1;
        return { ...s, events_last_hour: (s.events_last_hour ?? 0) + 1, events_per_hour: hours };
      });
    } else if (payload.kind === 'learning.signal') {
      // A signal is not an event: it brings the server's new counts of the last 24 h.
      const counts = (payload as SignalEvent).counts_last_24h;
      setStats((s) => (s ? { ...s, signals_last_24h: counts } : s));
    }
  });

  const extra = stats
    ? Object.entries(stats).filter(
        ([key, value]) =>
          typeof value === 'number' && key !== 'events_per_hour' && !KNOWN.some(([known]) => known === key),
      )
    : [];

  return (
    <Panel id="learning-stats" title="Learning" className="learning-stats">
      {!stats ? (
        <EmptyState>Loading the learning statistics…</EmptyState>
      ) : (
        <>
          <dl className="dash-facts">
            {KNOWN.filter(([key]) => key in stats).map(([key, label]) => (
              <div key={key}>
                <dt>{label}</dt>
                <dd data-testid={`stat-${key}`}>{formatStat(stats[key])}</dd>
              </div>
            ))}
            {extra.map(([key, value]) => (
              <div key={key}>
                <dt>{humanise(key)}</dt>
                <dd data-testid={`stat-${key}`}>{formatStat(value)}</dd>
              </div>
            ))}
          </dl>
          <HourBars counts={stats.events_per_hour ?? []} />
          <SignalCounts counts={stats.signals_last_24h} />
        </>
      )}
    </Panel>
  );
}

function formatStat(value: unknown): string {
  if (typeof value === 'number' && Number.isFinite(value)) return value.toLocaleString('en-GB');
  return '—';
}

/** Learning events per hour over the last 24 hours, oldest first. */
export function HourBars({ counts }: { counts: readonly number[] }) {
  if (counts.length === 0) return <p className="muted dash-small">No hourly counts reported.</p>;
  const top = Math.max(1, ...counts);
  const w = 100 / counts.length;
  const total = counts.reduce((a, b) => a + b, 0);
  return (
    <figure className="learning-stats__bars">
      <svg
        viewBox="0 0 100 40"
        preserveAspectRatio="none"
        role="img"
        aria-label={`Learning events per hour over the last ${counts.length} hours, oldest first: ${counts.join(', ')}`}
        data-testid="events-per-hour"
      >
        {counts.map((c, i) => (
          <rect
            key={i}
            x={i * w + w * 0.12}
            width={w * 0.76}
            y={40 - (c / top) * 38}
            height={(c / top) * 38}
          />
        ))}
      </svg>
      <figcaption className="muted dash-small">
        Events per hour, last {counts.length} h ({total} in all; peak {top === 1 && total === 0 ? 0 : top})
      </figcaption>
    </figure>
  );
}
