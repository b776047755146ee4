/** Learning signals per kind over the last 24 hours, as the server counted them. */
export type SignalCountMap = Record<string, number>;

/** The `learning.signal` event: a signal created, changed or removed, with the new counts. */
export interface SignalEvent {
  kind: 'learning.signal';
  action: 'created' | 'changed' | 'removed';
  id: number;
  signal_kind: string | null;
  was: string | null;
  value: number;
  kernel: number | null;
  created_at: string;
  counts_last_24h: SignalCountMap;
}

/** The kinds in the order shown (docs/training.md, "Learning signals"); others follow. */
export const SIGNAL_KINDS: [kind: string, label: string][] = [
  ['accepted', 'Accepted'],
  ['rejected', 'Rejected'],
  ['correction', 'Corrections'],
  ['constraint', 'Constraints'],
  ['repeated_query', 'Repeated queries'],
  ['long_session', 'Long sessions'],
  ['unknown_tokens', 'Unknown tokens'],
];

/** Signals by kind in the last 24 h: only the kinds the server counted (none: nothing shown). */
export function SignalCounts({ counts }: { counts?: SignalCountMap | null }) {
  if (!counts) return null;
  const known = SIGNAL_KINDS.filter(([kind]) => kind in counts);
  const others = Object.keys(counts)
    .filter((kind) => !SIGNAL_KINDS.some(([k]) => k === kind))
    .map((kind): [string, string] => [kind, kind.replace(/_/g, ' ')]);
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return (
    <section className="learning-stats__signals" aria-labelledby="learning-signals-title">
      <h3 id="learning-signals-title" className="learning-stats__subhead">
        Signals, last 24 h <span data-testid="signals-total">({total.toLocaleString('en-GB')})</span>
      </h3>
      <dl className="dash-facts">
        {[...known, ...others].map(([kind, label]) => (
          <div key={kind}>
            <dt>{label}</dt>
            <dd data-testid={`signal-${kind}`}>{(counts[kind] ?? 0).toLocaleString('en-GB')}</dd>
          </div>
        ))}
      </dl>
    </section>
  );
}
