import type { ReactNode } from 'react';
import { SnapshotNote } from './bundleParts';
import { EdgeBundles } from './EdgeBundles';
import { count, lag, sizeText, when } from './fedFormat';
import type { BundlesView, CentralState } from './types';
import type { Federation } from './useFederation';

/** What each link state means for the person reading the card. */
const STATE_HINTS: Partial<Record<CentralState, ReactNode>> = {
  'not joined': (
    <>
      Not joined yet: run <code>qig federation join URL TOKEN</code> with a token from the central.
    </>
  ),
  connecting: 'Connecting to the central…',
  disconnected: 'The central cannot be reached: packets wait in the outbox and are sent when it is back.',
  revoked:
    'The central revoked this node: it refuses its packets. Ask the central’s admin for a new node and join again.',
};

interface Props {
  federation: Federation;
  now: number;
  staff?: boolean;
  /** The bundles read again (after a rollback). */
  onBundles?: (bundles: BundlesView) => void;
}

/**
 * An edge: its link to the central, what waits to be sent, how far behind it is, the update
 * bundle it runs (staff roll back) and the last snapshot it imported.
 */
export function EdgeCard({ federation, now, staff = false, onBundles = () => {} }: Props) {
  const central = federation.central;
  const state: CentralState = central?.state ?? 'not joined';
  const size = sizeText(federation.size, federation.kernels);
  const warning = state === 'revoked' || state === 'disconnected';
  const hint = STATE_HINTS[state];

  return (
    <div className="fed-edge" data-testid="federation-edge">
      <div className="fed__head">
        <p className="fed__summary" data-testid="federation-summary">
          Edge{size && ` · ${size}`}
        </p>
        <p className="muted dash-small">This node: {federation.node.name || '—'}</p>
        <SnapshotNote snapshot={federation.snapshot} now={now} />
      </div>
      <dl className="dash-facts fed-facts">
        <div className="fed-facts__wide">
          <dt>Central</dt>
          <dd data-testid="central-url">{central?.url || '—'}</dd>
        </div>
        <div>
          <dt>Connection</dt>
          <dd>
            <span
              className={`badge fed-state fed-state--${state.replace(/\s+/g, '-')}`}
              data-testid="central-state"
            >
              {state}
            </span>
          </dd>
        </div>
        <div>
          <dt>Since</dt>
          <dd data-testid="central-since">
            {central?.since ? (
              <time dateTime={central.since} title={central.since}>
                {when(central.since, now)}
              </time>
            ) : (
              '—'
            )}
          </dd>
        </div>
        <div>
          <dt>Outbox</dt>
          <dd data-testid="central-outbox" title="Packets waiting for the central's acknowledgement">
            {count(central?.outbox)}
          </dd>
        </div>
        <div>
          <dt>Rejected</dt>
          <dd
            data-testid="central-rejected"
            className={central?.rejected ? 'fed-warn' : undefined}
            title="Packets the central refused, kept with their reason"
          >
            {count(central?.rejected)}
          </dd>
        </div>
        <div>
          <dt>Lag</dt>
          <dd data-testid="central-lag">{lag(central?.lag_s)}</dd>
        </div>
        <div>
          <dt>Version applied</dt>
          <dd data-testid="central-version">{count(central?.applied_version)}</dd>
        </div>
      </dl>
      {central?.last_error && (
        <p className={warning ? 'fed__error' : 'fed-warn dash-small'} data-testid="central-error">
          Last error: {central.last_error}
        </p>
      )}
      {hint && (
        <p className={`dash-small ${warning ? 'fed-warn' : 'muted'}`} data-testid="central-hint">
          {hint}
        </p>
      )}
      <EdgeBundles bundles={federation.bundles} staff={staff} now={now} onBundles={onBundles} />
    </div>
  );
}
