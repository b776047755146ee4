import { useId } from 'react';
import { bytes } from '../dashboard/format';
import { ActionOutcome, StateBadge, useAction } from './bundleParts';
import { getBundles, rollbackBundle } from './federationApi';
import { bundleVersion, kernelList, millis, when } from './fedFormat';
import type { BundleRow, BundlesView } from './types';

interface Props {
  bundles: Required<BundlesView>;
  staff: boolean;
  now: number;
  /** The bundles read again after a rollback. */
  onBundles: (bundles: BundlesView) => void;
}

/** The refusals newer than the bundle it runs (rows are newest first), or every one when it runs none. */
function newRefusals(rows: readonly BundleRow[], running: BundleRow | undefined): BundleRow[] {
  const end = running ? rows.indexOf(running) : rows.length;
  return rows.slice(0, end).filter((row) => row.status === 'refused');
}

/**
 * An edge's update bundles: the one it runs (version, when it was applied, how long verifying and
 * swapping took), a bundle it refused with its reason, the recent ones; staff roll back to the
 * one before.
 */
export function EdgeBundles({ bundles, staff, now, onBundles }: Props) {
  const titleId = useId();
  const action = useAction();
  const rows = bundles.bundles;
  const running = rows.find((row) => row.status === 'applied');
  const refused = newRefusals(rows, running);

  function rollback() {
    const ok = window.confirm(
      `Roll back to the previous bundle? This edge runs bundle ${bundleVersion(
        running?.version,
      )}; the one before it is verified again from its kept files and served instead.`,
    );
    if (!ok) return;
    void action.run('roll back', async () => {
      const result = await rollbackBundle();
      void getBundles().then(onBundles, () => undefined);
      return `Rolled back: this edge runs bundle ${bundleVersion(result.version)} again.`;
    });
  }

  return (
    <section className="fed-section" aria-labelledby={titleId} data-testid="edge-bundles">
      <div className="fed-section__head">
        <h3 id={titleId} className="fed-section__title">
          Update bundle
        </h3>
        {staff && running && (
          <div className="fed-actions">
            <button
              type="button"
              className="button fed-button fed-button--danger"
              disabled={action.busy}
              onClick={rollback}
            >
              Roll back
            </button>
          </div>
        )}
      </div>
      {running ? (
        <dl className="dash-facts fed-facts" data-testid="edge-bundle-running">
          <div>
            <dt>Runs bundle</dt>
            <dd data-testid="edge-bundle-version">{bundleVersion(running.version)}</dd>
          </div>
          <div>
            <dt>Applied</dt>
            <dd data-testid="edge-bundle-applied">
              {running.applied_at ? (
                <time dateTime={running.applied_at} title={running.applied_at}>
                  {when(running.applied_at, now)}
                </time>
              ) : (
                '—'
              )}
            </dd>
          </div>
          <div>
            <dt>Applied in</dt>
            <dd data-testid="edge-bundle-apply-ms" title="Verifying the files and swapping the adapters">
              {millis(running.apply_ms)}
            </dd>
          </div>
          <div>
            <dt>Kernels</dt>
            <dd>{kernelList(running.kernels)}</dd>
          </div>
        </dl>
      ) : (
        <p className="dash-empty">
          No update bundle applied: this edge serves its own adapters until central publishes a bundle for its
          kernels.
        </p>
      )}
      {refused.map((row) => (
        <p className="fed__error" key={row.id} data-testid="edge-bundle-refused">
          Refused bundle {bundleVersion(row.version)}: {row.reason || 'no reason given'}
        </p>
      ))}
      <ActionOutcome action={action} testId="rollback" />
      {rows.length > 0 && (
        <div className="fed-table-wrap">
          <table className="dash-table fed-table fed-details__table">
            <caption className="muted dash-small">Bundles received, newest first</caption>
            <thead>
              <tr>
                <th scope="col">Version</th>
                <th scope="col">Status</th>
                <th scope="col">Kernels</th>
                <th scope="col">Size</th>
                <th scope="col">Applied</th>
                <th scope="col">Applied in</th>
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
                        className={`dash-small fed-reason ${row.status === 'refused' ? 'fed-warn' : 'muted'}`}
                        data-testid="bundle-reason"
                      >
                        {row.reason}
                      </span>
                    )}
                  </td>
                  <td title={row.kernels.join(', ')}>{kernelList(row.kernels)}</td>
                  <td>{row.bytes ? bytes(row.bytes) : '—'}</td>
                  <td>
                    {row.applied_at ? (
                      <time dateTime={row.applied_at} title={row.applied_at}>
                        {when(row.applied_at, now)}
                      </time>
                    ) : (
                      '—'
                    )}
                  </td>
                  <td>{millis(row.apply_ms)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
