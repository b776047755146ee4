import { useEffect, useId, useMemo, useState } from 'react';
import { ApiError } from '../../api/client';
import { StateBadge } from './bundleParts';
import { getRounds } from './federationApi';
import { kernelList, loss, when } from './fedFormat';
import { RoundForm } from './RoundForm';
import type { FlowerRound, RoundStatus } from './types';

/** Rounds shown, newest first. */
export const ROUNDS_SHOWN = 5;

const STAGE: Record<RoundStatus, number> = { queued: 0, running: 1, gating: 2, completed: 3, failed: 3 };

/** The later of two copies of one round (the list read once, a live message): further on wins. */
function later(a: FlowerRound, b: FlowerRound): FlowerRound {
  const progress = (r: FlowerRound) => (STAGE[r.status] ?? 0) * 1e6 + (r.history?.length ?? 0);
  return progress(a) > progress(b) ? a : b;
}

/** Every copy of every round, one per id (the later), newest first. */
export function mergeRounds(...sources: readonly FlowerRound[][]): FlowerRound[] {
  const byId = new Map<number, FlowerRound>();
  for (const source of sources) {
    for (const round of source) {
      const seen = byId.get(round.id);
      byId.set(round.id, seen ? later(round, seen) : round);
    }
  }
  return [...byId.values()].sort((a, b) => b.id - a.id);
}

/** `4 of 6 rounds done`: the Flower rounds of all its kernels recorded so far. */
function progress(round: FlowerRound): string {
  const total = round.kernels.length * round.rounds;
  return `${round.history.length} of ${total} ${total === 1 ? 'round' : 'rounds'} done`;
}

function RoundCard({ round, now }: { round: FlowerRound; now: number }) {
  const titleId = useId();
  const verdicts = Object.entries(round.result?.kernels ?? {});
  const bundle = round.result?.bundle;
  const time = round.finished_at ?? round.started_at ?? round.created_at;
  const timeWord = round.finished_at ? 'finished' : round.started_at ? 'started' : 'queued';

  return (
    <article className="fed-round" aria-labelledby={titleId} data-testid="flower-round">
      <div className="fed-round__head">
        <h4 id={titleId} className="fed-round__title">
          Round {round.id}
        </h4>
        <StateBadge state={round.status} kind="round" />
        <span className="muted dash-small">
          kernels {kernelList(round.kernels)} · at least {round.min_edges}{' '}
          {round.min_edges === 1 ? 'edge' : 'edges'} · {progress(round)}
          {time && (
            <>
              {' '}
              · {timeWord}{' '}
              <time dateTime={time} title={time}>
                {when(time, now)}
              </time>
            </>
          )}
        </span>
      </div>
      {round.error && (
        <p className="fed__error" data-testid="round-error">
          {round.error}
        </p>
      )}
      {round.history.length === 0 ? (
        <p className="dash-empty">
          {round.status === 'failed' ? 'No round was recorded.' : 'Waiting for the edges’ first updates…'}
        </p>
      ) : (
        <div className="fed-table-wrap">
          <table className="dash-table fed-table fed-details__table">
            <caption className="muted dash-small">
              Round {round.id}: each kernel&rsquo;s Flower rounds
            </caption>
            <thead>
              <tr>
                <th scope="col">Kernel</th>
                <th scope="col">Round</th>
                <th scope="col">Loss</th>
                <th scope="col">Examples</th>
                <th scope="col">Edges in</th>
                <th scope="col">Edges out</th>
              </tr>
            </thead>
            <tbody>
              {round.history.map((entry) => (
                <tr key={`${entry.kernel}-${entry.round}`} data-testid="round-figures">
                  <th scope="row">{entry.kernel}</th>
                  <td>{entry.round}</td>
                  <td data-testid="round-loss">{loss(entry.loss)}</td>
                  <td>{entry.examples}</td>
                  <td className="fed-cell--wrap" data-testid="round-edges-in">
                    {entry.edges_in.length === 0
                      ? '—'
                      : entry.edges_in
                          .map(
                            (e) =>
                              `${e.edge} (${e.examples} ex.${e.loss === null ? '' : `, ${loss(e.loss)}`})`,
                          )
                          .join(', ')}
                  </td>
                  <td
                    className={`fed-cell--wrap${entry.edges_out.length ? ' fed-warn' : ''}`}
                    data-testid="round-edges-out"
                  >
                    {entry.edges_out.length === 0
                      ? '—'
                      : entry.edges_out.map((e) => `${e.edge}: ${e.why}`).join('; ')}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {verdicts.length > 0 && (
        <ul className="fed-round__verdicts dash-small" data-testid="round-verdicts">
          {verdicts.map(([kernel, verdict]) => (
            <li key={kernel} className={verdict.promoted ? undefined : 'muted'}>
              Kernel {kernel}: {verdict.promoted ? 'promoted' : 'not promoted'}
              {verdict.reason ? ` — ${verdict.reason}` : ''}
            </li>
          ))}
        </ul>
      )}
      {bundle && (
        <p className={`dash-small ${bundle.published ? '' : 'muted'}`} data-testid="round-bundle">
          {bundle.published
            ? `Published as bundle ${bundle.version ?? '—'} (kernels ${kernelList(bundle.kernels)}).`
            : `No bundle published: ${bundle.error || 'no kernel was promoted'}.`}
        </p>
      )}
    </article>
  );
}

interface Props {
  staff: boolean;
  now: number;
  /** Rounds heard live on the topic (`federation.round`), by id. */
  live: Record<number, FlowerRound>;
}

type Listed =
  { state: 'loading' } | { state: 'ok'; rounds: FlowerRound[] } | { state: 'error'; message: string };

/**
 * Rounds of federated adapter averaging on Flower (central): the list read once, kept up to date
 * by the topic's `federation.round` messages; staff start one.
 */
export function FlowerRounds({ staff, now, live }: Props) {
  const titleId = useId();
  const [listed, setListed] = useState<Listed>({ state: 'loading' });
  const [started, setStarted] = useState<FlowerRound[]>([]);

  useEffect(() => {
    let current = true;
    getRounds().then(
      (answer) => {
        if (!current) return;
        setListed({ state: 'ok', rounds: Array.isArray(answer) ? answer : (answer?.results ?? []) });
      },
      (failure: unknown) => {
        if (!current) return;
        const message =
          failure instanceof ApiError && failure.status === 404
            ? 'this server has no Flower rounds API.'
            : (failure as Error).message;
        setListed({ state: 'error', message });
      },
    );
    return () => {
      current = false;
    };
  }, []);

  const rounds = useMemo(
    () => mergeRounds(listed.state === 'ok' ? listed.rounds : [], started, Object.values(live)),
    [listed, started, live],
  );
  const shown = rounds.slice(0, ROUNDS_SHOWN);

  return (
    <section className="fed-section" aria-labelledby={titleId} data-testid="flower-rounds">
      <h3 id={titleId} className="fed-section__title">
        Flower rounds
      </h3>
      <p className="muted dash-small">
        Federated adapter averaging: each edge trains the kernel&rsquo;s adapter on its own data and sends
        only the update; central averages them, holds the result to the promotion gate and publishes it as a
        bundle.
      </p>
      {staff ? (
        <RoundForm onStarted={(round) => setStarted((rows) => [round, ...rows])} />
      ) : (
        <p className="muted dash-small">Only admins can start a round.</p>
      )}
      {listed.state === 'error' && (
        <p className="fed-warn dash-small" data-testid="rounds-unread">
          Could not read the rounds: {listed.message}
        </p>
      )}
      {listed.state === 'loading' && shown.length === 0 && <p className="dash-empty">Loading the rounds…</p>}
      {listed.state !== 'loading' && shown.length === 0 && (
        <p className="dash-empty">
          No Flower round yet.{' '}
          {staff
            ? 'Central runs them with QIG_FLOWER=1, on the edges that started with QIG_FLOWER=1 and registered their SuperNode.'
            : 'An admin starts them here.'}
        </p>
      )}
      {shown.map((round) => (
        <RoundCard key={round.id} round={round} now={now} />
      ))}
      {rounds.length > shown.length && (
        <p className="muted dash-small">
          {rounds.length - shown.length} older {rounds.length - shown.length === 1 ? 'round' : 'rounds'} not
          shown.
        </p>
      )}
    </section>
  );
}
