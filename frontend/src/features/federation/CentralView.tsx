import { useState, type MouseEvent } from 'react';
import { EmptyState } from '../dashboard/Panel';
import { AddNodeForm } from './AddNodeForm';
import { SnapshotNote } from './bundleParts';
import { CentralBundles } from './CentralBundles';
import { newJoinToken, revokeNode } from './federationApi';
import { centralSummary, count, lag, sizeText, totals, when } from './fedFormat';
import { JoinTokenBox, type ShownToken } from './JoinTokenBox';
import { FlowerRounds } from './FlowerRounds';
import { NodeDetails } from './NodeDetails';
import type { BundleRow, BundlesView, CreatedNode, FederationNode, FlowerRound } from './types';
import type { Federation } from './useFederation';

/** The row without the secret: the token lives only in the box that shows it once. */
function rowOf(created: CreatedNode): FederationNode {
  const row: Partial<CreatedNode> = { ...created };
  delete row.join_token;
  delete row.join_command;
  return row as FederationNode;
}

export function StatusBadge({ status }: { status: string }) {
  return (
    <span className={`badge fed-status fed-status--${status.replace(/\s+/g, '-')}`} data-testid="node-status">
      {status}
    </span>
  );
}

interface Props {
  federation: Federation;
  staff: boolean;
  now: number;
  onNode: (node: FederationNode) => void;
  onBundle: (bundle: BundleRow) => void;
  onBundles: (bundles: BundlesView) => void;
  /** Flower rounds heard live, by id. */
  rounds: Record<number, FlowerRound>;
}

/**
 * A central: its edges with their state and traffic (staff add, revoke and re-issue tokens), the
 * learnings they sent, the update bundles and which edge runs which, and the Flower rounds.
 */
export function CentralView({ federation, staff, now, onNode, onBundle, onBundles, rounds }: Props) {
  const { nodes } = federation;
  const [token, setToken] = useState<ShownToken | null>(null);
  const [openId, setOpenId] = useState<number | null>(null);
  const [busyId, setBusyId] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);
  const open = nodes.find((n) => n.id === openId) ?? null;

  function added(created: CreatedNode) {
    const row = rowOf(created);
    onNode(row);
    setError(null);
    setToken({
      nodeId: row.id,
      nodeName: row.name,
      join_token: created.join_token,
      join_command: created.join_command,
      join_expires_at: row.join_expires_at ?? null,
    });
  }

  async function perform(node: FederationNode, what: string, call: () => Promise<void>) {
    setBusyId(node.id);
    setError(null);
    try {
      await call();
    } catch (failure) {
      setError(`Could not ${what} ${node.name}: ${(failure as Error).message}`);
    } finally {
      setBusyId(null);
    }
  }

  function revoke(node: FederationNode) {
    const ok = window.confirm(
      `Revoke ${node.name}? Central will refuse its packets and stop sending it anchors; it cannot join again with its token.`,
    );
    if (!ok) return;
    void perform(node, 'revoke', async () => {
      onNode(await revokeNode(node.id));
      // A token for a revoked node is of no use any more.
      setToken((shown) => (shown?.nodeId === node.id ? null : shown));
    });
  }

  function reissue(node: FederationNode) {
    void perform(node, 'issue a new token for', async () => {
      const fresh = await newJoinToken(node.id);
      setToken({ ...fresh, nodeId: node.id, nodeName: node.name });
      if (fresh.join_expires_at) onNode({ ...node, join_expires_at: fresh.join_expires_at });
    });
  }

  const toggle = (id: number) => setOpenId((current) => (current === id ? null : id));

  /** A click anywhere on a row opens its details, except on the row's own buttons. */
  function rowClick(event: MouseEvent<HTMLTableRowElement>, id: number) {
    if ((event.target as HTMLElement).closest('button, a')) return;
    toggle(id);
  }

  return (
    <div className="fed-central">
      <div className="fed__head">
        <p className="fed__summary" data-testid="federation-summary">
          {centralSummary(nodes)}
        </p>
        <p className="muted dash-small">
          This node: {federation.node.name || '—'}
          {federation.size || federation.kernels !== null
            ? ` · ${sizeText(federation.size, federation.kernels)}`
            : ''}
        </p>
        <SnapshotNote snapshot={federation.snapshot} now={now} />
      </div>
      {staff ? (
        <AddNodeForm onAdded={added} />
      ) : (
        <p className="muted dash-small">Only admins can add, revoke or re-invite nodes.</p>
      )}
      {token && <JoinTokenBox key={token.join_token} token={token} onDismiss={() => setToken(null)} />}
      {error && (
        <p className="fed__error" role="alert">
          {error}
        </p>
      )}
      {nodes.length === 0 ? (
        <EmptyState>
          No edge node yet.{' '}
          {staff
            ? 'Add one to get its join token, then run the join command on the edge.'
            : 'An admin adds them here.'}
        </EmptyState>
      ) : (
        <div className="fed-table-wrap">
          <table className="dash-table fed-table">
            <caption className="muted dash-small">
              Edge nodes (hover a row for its totals; open it for its packets)
            </caption>
            <thead>
              <tr>
                <th scope="col">Node</th>
                <th scope="col">Size</th>
                <th scope="col">Status</th>
                <th scope="col">Last seen</th>
                <th scope="col">Lag</th>
                <th scope="col">Version applied</th>
                <th scope="col">In/min</th>
                <th scope="col">Out/min</th>
                <th scope="col">Rejected/min</th>
                <th scope="col">
                  <span className="fed-visually-hidden">Actions</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {nodes.map((node) => (
                <tr
                  key={node.id}
                  data-testid="federation-node"
                  className={`fed-row${node.id === openId ? ' fed-row--open' : ''}`}
                  title={totals(node)}
                  onClick={(event) => rowClick(event, node.id)}
                >
                  <th scope="row">{node.name}</th>
                  <td>{node.size ?? '—'}</td>
                  <td>
                    <StatusBadge status={node.status} />
                  </td>
                  <td>
                    <time dateTime={node.last_seen ?? undefined} title={node.last_seen ?? 'never seen'}>
                      {when(node.last_seen, now)}
                    </time>
                  </td>
                  <td>{lag(node.lag_s)}</td>
                  <td>{count(node.applied_version)}</td>
                  <td>{count(node.per_minute?.in)}</td>
                  <td>{count(node.per_minute?.out)}</td>
                  <td className={node.per_minute?.rejected ? 'fed-warn' : undefined}>
                    {count(node.per_minute?.rejected)}
                  </td>
                  <td className="fed-actions">
                    <button
                      type="button"
                      className="button fed-button"
                      aria-expanded={node.id === openId}
                      aria-label={`Details of ${node.name}`}
                      onClick={() => toggle(node.id)}
                    >
                      Details
                    </button>
                    {staff && node.status === 'pending' && (
                      <button
                        type="button"
                        className="button fed-button"
                        aria-label={`New token for ${node.name}`}
                        disabled={busyId === node.id}
                        onClick={() => reissue(node)}
                      >
                        New token
                      </button>
                    )}
                    {staff && node.status !== 'revoked' && (
                      <button
                        type="button"
                        className="button fed-button fed-button--danger"
                        aria-label={`Revoke ${node.name}`}
                        disabled={busyId === node.id}
                        onClick={() => revoke(node)}
                      >
                        Revoke
                      </button>
                    )}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {open && <NodeDetails key={open.id} node={open} now={now} onClose={() => setOpenId(null)} />}
      <CentralBundles
        bundles={federation.bundles}
        staff={staff}
        now={now}
        onBundle={onBundle}
        onBundles={onBundles}
      />
      <FlowerRounds staff={staff} now={now} live={rounds} />
    </div>
  );
}
