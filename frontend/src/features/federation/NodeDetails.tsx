import { useEffect, useId, useState } from 'react';
import { bytes, clockTime } from '../dashboard/format';
import { getPackets } from './federationApi';
import { kernelList, totals, when } from './fedFormat';
import type { FederationNode, NodePackets } from './types';

/** How often the open details read the packets again (the row's totals changing also does). */
export const PACKETS_REFRESH_MS = 5000;

interface Props {
  node: FederationNode;
  now: number;
  onClose: () => void;
}

/** One edge's recent packets and rejections (newest first), read while the details are open. */
export function NodeDetails({ node, now, onClose }: Props) {
  const titleId = useId();
  const [data, setData] = useState<NodePackets | null>(null);
  const [error, setError] = useState<string | null>(null);
  // New packets move the totals the topic sends: read the lists again at once.
  const revision = `${node.packets_in}/${node.packets_rejected}/${node.duplicates}/${node.status}`;

  useEffect(() => {
    let live = true;
    const read = () =>
      getPackets(node.id).then(
        (answer) => {
          if (!live) return;
          setData(answer);
          setError(null);
        },
        (failure: unknown) => {
          if (live) setError(`Could not read the packets: ${(failure as Error).message}`);
        },
      );
    void read();
    const every = setInterval(() => void read(), PACKETS_REFRESH_MS);
    return () => {
      live = false;
      clearInterval(every);
    };
  }, [node.id, revision]);

  return (
    <section className="fed-details" aria-labelledby={titleId} data-testid="node-details">
      <div className="fed-details__head">
        <h3 id={titleId}>{node.name}: packets and rejections</h3>
        <button type="button" className="button" onClick={onClose}>
          Close details
        </button>
      </div>
      <p className="muted dash-small">
        {totals(node)} · joined {when(node.joined_at, now)}
        {node.uuid && (
          <>
            {' '}
            · <code title="The node's uuid">{node.uuid}</code>
          </>
        )}
      </p>
      {error && (
        <p className="fed__error" role="alert">
          {error}
        </p>
      )}
      {!data && !error && <p className="dash-empty">Loading the packets…</p>}
      {data && (
        <>
          <h4 className="fed-details__subhead">Recent packets</h4>
          {data.packets.length === 0 ? (
            <p className="dash-empty">No packet received from {node.name} yet.</p>
          ) : (
            <table className="dash-table fed-details__table">
              <caption className="muted dash-small">Packets from {node.name}, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">Received</th>
                  <th scope="col">Packet</th>
                  <th scope="col">Kernels</th>
                  <th scope="col">Size</th>
                  <th scope="col">Duplicate</th>
                </tr>
              </thead>
              <tbody>
                {data.packets.map((packet) => (
                  <tr key={packet.id} data-testid="node-packet">
                    <td>
                      <time dateTime={packet.received_at} title={packet.received_at}>
                        {clockTime(packet.received_at)}
                      </time>
                    </td>
                    <th scope="row">
                      <code title={packet.id}>{packet.id.slice(0, 8)}</code>
                    </th>
                    <td>{kernelList(packet.kernels)}</td>
                    <td>{bytes(packet.bytes)}</td>
                    <td>{packet.duplicate ? 'yes' : 'no'}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
          <h4 className="fed-details__subhead">Rejections</h4>
          {data.rejections.length === 0 ? (
            <p className="dash-empty">No packet from {node.name} was rejected.</p>
          ) : (
            <table className="dash-table fed-details__table">
              <caption className="muted dash-small">Packets refused from {node.name}, newest first</caption>
              <thead>
                <tr>
                  <th scope="col">At</th>
                  <th scope="col">Reason</th>
                  <th scope="col">Size</th>
                </tr>
              </thead>
              <tbody>
                {data.rejections.map((rejection, i) => (
                  <tr key={`${rejection.at}-${i}`} data-testid="node-rejection">
                    <td>
                      <time dateTime={rejection.at} title={rejection.at}>
                        {clockTime(rejection.at)}
                      </time>
                    </td>
                    <th scope="row" className="fed-details__reason">
                      {rejection.reason}
                    </th>
                    <td>{bytes(rejection.bytes)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </>
      )}
    </section>
  );
}
