import { useState } from 'react';
import { EmptyState, Panel } from '../dashboard/Panel';
import { ago, duration } from '../dashboard/format';
import { useTelemetryTopic } from '../telemetry/useTelemetry';

/** A federation peer as `federation.history` describes it. */
export interface FederationNode {
  id: string | number;
  name: string;
  url: string;
  status: string;
  last_seen: string | null;
  lag_s: number | null;
  syncing: boolean;
}

type Payload = { kind: 'federation.history'; nodes: FederationNode[] } | { kind: string };

/** Federation peers, whether they are syncing, and how far behind they are. */
export function FederationPanel() {
  const [nodes, setNodes] = useState<FederationNode[] | null>(null);

  useTelemetryTopic<Payload>('federation', ({ payload }) => {
    if (payload.kind === 'federation.history' && 'nodes' in payload) setNodes(payload.nodes);
  });

  return (
    <Panel id="federation" title="Federation" className="federation">
      {!nodes ? (
        <EmptyState>Loading the federation nodes…</EmptyState>
      ) : nodes.length === 0 ? (
        <EmptyState>
          No federation: this node runs on its own. Peers, their sync state and lag appear here once
          federation is set up.
        </EmptyState>
      ) : (
        <table className="dash-table">
          <caption className="muted dash-small">{nodes.length} nodes</caption>
          <thead>
            <tr>
              <th scope="col">Node</th>
              <th scope="col">Status</th>
              <th scope="col">Last seen</th>
              <th scope="col">Lag</th>
              <th scope="col">Syncing</th>
            </tr>
          </thead>
          <tbody>
            {nodes.map((node) => (
              <tr key={node.id}>
                <th scope="row" title={node.url}>
                  {node.name}
                </th>
                <td>{node.status}</td>
                <td>{ago(node.last_seen)}</td>
                <td>{duration(node.lag_s)}</td>
                <td>{node.syncing ? 'yes' : 'no'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Panel>
  );
}
