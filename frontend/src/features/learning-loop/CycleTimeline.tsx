import { clockTime, fixed } from '../dashboard/format';
import { percent } from '../kernels/KernelVersions';
import type { Cycle, LoopAction, Opportunity } from './types';

/** Cycles shown, newest first. */
export const CYCLES_SHOWN = 10;

const words = (key: string) => key.replace(/_/g, ' ');

/** The last cycles, newest first: what each read, what it found and what came of what it did. */
export function CycleTimeline({ cycles }: { cycles: readonly Cycle[] }) {
  return (
    <ol className="loop-cycles" aria-label="Learning cycles, newest first">
      {cycles.slice(0, CYCLES_SHOWN).map((cycle) => (
        <CycleItem key={cycle.id} cycle={cycle} />
      ))}
    </ol>
  );
}

function CycleItem({ cycle }: { cycle: Cycle }) {
  const when = cycle.started_at ?? cycle.finished_at;
  const kinds = Object.entries(cycle.signals_by_kind ?? {});
  return (
    <li className="loop-cycle" data-testid={`cycle-${cycle.id}`}>
      <div className="loop-cycle__head">
        <time className="loop-cycle__time" dateTime={when ?? undefined} title={when ?? 'not started'}>
          {clockTime(when)}
        </time>
        <span className="loop-cycle__trigger">{cycle.trigger}</span>
        <span className={`loop-status loop-status--${cycle.status}`} data-testid="cycle-status">
          {cycle.status}
        </span>
        <span className="loop-cycle__reason">{cycle.reason}</span>
      </div>
      <p className="loop-cycle__signals dash-small" data-testid="cycle-signals">
        {cycle.signals_read} {cycle.signals_read === 1 ? 'signal' : 'signals'} read
        {kinds.length > 0 && ` (${kinds.map(([kind, n]) => `${n} ${words(kind)}`).join(', ')})`}
      </p>
      {cycle.opportunities.length > 0 && (
        <>
          <h4 className="loop-cycle__subhead">Opportunities</h4>
          <ul className="loop-cycle__list">
            {cycle.opportunities.map((o, i) => (
              <OpportunityLine key={i} opportunity={o} />
            ))}
          </ul>
        </>
      )}
      {cycle.actions.length > 0 && (
        <>
          <h4 className="loop-cycle__subhead">Actions</h4>
          <ul className="loop-cycle__list">
            {cycle.actions.map((a, i) => (
              <ActionLine key={i} action={a} />
            ))}
          </ul>
        </>
      )}
      {cycle.sync?.outbox && <p className="muted dash-small">Sync: {cycle.sync.outbox}</p>}
    </li>
  );
}

function OpportunityLine({ opportunity: o }: { opportunity: Opportunity }) {
  return (
    <li data-testid="cycle-opportunity">
      <span className="loop-cycle__kind">{words(o.kind)}</span> {fixed(o.score, 2)}
      {o.kernel !== null && ` · kernel ${o.kernel}`} ·{' '}
      <strong className={o.chosen ? 'loop-chosen' : 'muted'}>{o.chosen ? 'chosen' : 'not chosen'}</strong>{' '}
      <span className="muted">({o.why})</span>: {o.summary}
    </li>
  );
}

function ActionLine({ action: a }: { action: LoopAction }) {
  const h = a.heldout;
  return (
    <li data-testid="cycle-action">
      <span className="loop-cycle__kind">{words(a.kind)}</span>
      {a.kernel !== null && ` · kernel ${a.kernel}`}
      {/* The jobs have no page of their own yet (the router has none): the id is plain text. */}
      {a.job !== null && ` · job #${a.job}`} · {a.status}
      {a.promoted !== null && (
        <>
          {' — '}
          <strong className={a.promoted ? 'loop-promoted' : 'loop-kept'}>
            {a.promoted ? 'promoted' : 'not promoted'}
          </strong>
        </>
      )}
      {h && (
        <span data-testid="action-heldout">
          : {h.own_is_heldout ? 'held-out' : 'held-in'} loss {fixed(h.own_before, 3)} →{' '}
          {fixed(h.own_after, 3)}, general held-out as served {percent(h.served_change)}
        </span>
      )}
      {a.summary && <span className="muted dash-small"> — {a.summary}</span>}
    </li>
  );
}
