import { useId } from 'react';
import { bytes } from '../dashboard/format';
import { ActionOutcome, StateBadge, useAction } from './bundleParts';
import { getBundles, publishBundle, trainBundle } from './federationApi';
import { bundleVersion, count, edgeBundleState, kernelList, when } from './fedFormat';
import type { BundleRow, BundlesView } from './types';

interface Props {
  bundles: Required<BundlesView>;
  staff: boolean;
  now: number;
  /** A row the API answered (queued or published), shown before the topic says so. */
  onBundle: (bundle: BundleRow) => void;
  /** The bundles read again after an action. */
  onBundles: (bundles: BundlesView) => void;
}

/** Statuses whose reason is a problem rather than a note. */
const WARNING: ReadonlySet<string> = new Set(['not promoted', 'failed', 'refused']);

const kernelsWord = (kernels: readonly number[]) =>
  `${kernels.length === 1 ? 'kernel' : 'kernels'} ${kernelList(kernels)}`;

/**
 * Central's update bundles (docs/federation.md, "Update bundles"): the learnings the edges sent,
 * per kernel and node; the bundles trained or published; which bundle each edge runs; for staff,
 * train on the new learnings or publish the served adapters now.
 */
export function CentralBundles({ bundles, staff, now, onBundle, onBundles }: Props) {
  const learningsId = useId();
  const bundlesId = useId();
  const action = useAction();
  const { learnings, edges } = bundles;
  const rows = bundles.bundles;

  /** Read the bundles again (best effort: the topic brings them too). */
  const reread = () => getBundles().then(onBundles, () => undefined);

  function train() {
    void action.run('train', async () => {
      const row = await trainBundle();
      onBundle(row);
      void reread();
      return `Training ${kernelsWord(row.kernels)} on ${row.learnings} new ${
        row.learnings === 1 ? 'learning' : 'learnings'
      }: the kernels that pass the promotion gate are published as one bundle.`;
    });
  }

  function publish() {
    const ok = window.confirm(
      'Publish the adapters this central serves as a new bundle? Every edge holding one of their kernels fetches and applies it.',
    );
    if (!ok) return;
    void action.run('publish', async () => {
      const row = await publishBundle();
      onBundle(row);
      void reread();
      return `Published bundle ${bundleVersion(row.version)} (${kernelsWord(row.kernels)}): the edges holding them fetch it now.`;
    });
  }

  return (
    <>
      <section className="fed-section" aria-labelledby={learningsId} data-testid="federation-learnings">
        <h3 id={learningsId} className="fed-section__title">
          Learnings
        </h3>
        {learnings.length === 0 ? (
          <p className="dash-empty">
            No learnings yet: edges send corrections and approved answers their users give (value ≥ 0.7) after
            each learning cycle.
          </p>
        ) : (
          <div className="fed-table-wrap fed-table-wrap--tall">
            <table className="dash-table fed-table fed-details__table">
              <caption className="muted dash-small">
                Learnings received per kernel and node; trained: used by a bundle&rsquo;s job
              </caption>
              <thead>
                <tr>
                  <th scope="col">Kernel</th>
                  <th scope="col">Node</th>
                  <th scope="col">Received</th>
                  <th scope="col">Trained</th>
                </tr>
              </thead>
              <tbody>
                {learnings.map((row) => (
                  <tr key={`${row.kernel}-${row.node}`} data-testid="learning-row">
                    <th scope="row">{row.kernel}</th>
                    <td>{row.node}</td>
                    <td>{count(row.received)}</td>
                    <td>{count(row.trained)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>

      <section className="fed-section" aria-labelledby={bundlesId} data-testid="federation-bundles">
        <div className="fed-section__head">
          <h3 id={bundlesId} className="fed-section__title">
            Update bundles
          </h3>
          {staff && (
            <div className="fed-actions">
              <button type="button" className="button fed-button" disabled={action.busy} onClick={train}>
                Train on new learnings
              </button>
              <button type="button" className="button fed-button" disabled={action.busy} onClick={publish}>
                Publish served adapters
              </button>
            </div>
          )}
        </div>
        {!staff && <p className="muted dash-small">Only admins can train or publish bundles.</p>}
        <ActionOutcome action={action} testId="bundle-action" />
        {rows.length === 0 ? (
          <p className="dash-empty">
            No update bundle yet: central trains one when enough new learnings of a kernel have arrived
            (QIG_FEDERATION_BUNDLE_MIN_LEARNINGS) or an admin asks, and publishes the kernels that pass the
            promotion gate.
          </p>
        ) : (
          <div className="fed-table-wrap">
            <table className="dash-table fed-table fed-details__table">
              <caption className="muted dash-small">Bundles, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Version</th>
                  <th scope="col">Status</th>
                  <th scope="col">Source</th>
                  <th scope="col">Kernels</th>
                  <th scope="col">Size</th>
                  <th scope="col">Learnings</th>
                  <th scope="col">Published</th>
                </tr>
              </thead>
              <tbody>
                {rows.map((row) => (
                  <tr key={row.id} data-testid="bundle-row">
                    <th scope="row">{bundleVersion(row.version)}</th>
                    <td className="fed-cell--wrap">
                      <StateBadge state={row.status} />{' '}
                      {row.reason && (
                        <span
                          className={`dash-small fed-reason ${WARNING.has(row.status) ? 'fed-warn' : 'muted'}`}
                          data-testid="bundle-reason"
                        >
                          {row.reason}
                        </span>
                      )}
                    </td>
                    <td>{row.source || '—'}</td>
                    <td title={row.kernels.join(', ')}>{kernelList(row.kernels)}</td>
                    <td>{row.bytes ? bytes(row.bytes) : '—'}</td>
                    <td>{count(row.learnings)}</td>
                    <td>
                      {row.published_at ? (
                        <time dateTime={row.published_at} title={row.published_at}>
                          {when(row.published_at, now)}
                        </time>
                      ) : (
                        '—'
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}

        <h4 className="fed-details__subhead">Bundles on the edges</h4>
        {edges.length === 0 ? (
          <p className="dash-empty">No edge has joined yet: each joined edge reports the bundle it runs.</p>
        ) : (
          <table className="dash-table fed-table fed-details__table">
            <caption className="muted dash-small">The bundle each joined edge runs</caption>
            <thead>
              <tr>
                <th scope="col">Node</th>
                <th scope="col">Bundle</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {edges.map((edge) => {
                const state = edgeBundleState(edge);
                return (
                  // The node's name is a cell, not a row header: the nodes table holds its row.
                  <tr key={edge.node} data-testid="edge-bundle">
                    <td>{edge.node}</td>
                    <td>{bundleVersion(edge.version)}</td>
                    <td className={`fed-cell--wrap${state.refused ? ' fed-warn' : ''}`}>
                      {state.refused && <span aria-hidden="true">⚠ </span>}
                      {state.text}
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        )}
      </section>
    </>
  );
}
