import { useContext } from 'react';
import { AuthContext } from '../auth/useAuth';
import { EmptyState, Panel } from '../dashboard/Panel';
import { SnapshotNote } from './bundleParts';
import { CentralView } from './CentralView';
import { EdgeCard } from './EdgeCard';
import { useNow } from './fedFormat';
import { useFederation } from './useFederation';
import './federation.css';

/**
 * Federation: whether this node runs alone, as a central with edges (their state, lag and
 * traffic, staff add and revoke them; the learnings they sent, the update bundles and which edge
 * runs which; the Flower rounds), or as an edge of a central (its link, what waits to be sent, the
 * bundle it runs). Everything shown is what the `federation` topic and the federation APIs sent.
 */
export function FederationPanel() {
  const session = useContext(AuthContext);
  const staff = session?.status === 'signed-in' && session.user.is_staff;
  const { federation, rounds, updateNode, updateBundle, setBundles } = useFederation();
  const now = useNow();

  return (
    <Panel id="federation" title="Federation" className="federation">
      {!federation ? (
        <EmptyState>Loading the federation…</EmptyState>
      ) : federation.role === 'central' ? (
        <CentralView
          federation={federation}
          staff={staff}
          now={now}
          onNode={updateNode}
          onBundle={updateBundle}
          onBundles={setBundles}
          rounds={rounds}
        />
      ) : federation.role === 'edge' ? (
        <EdgeCard federation={federation} now={now} staff={staff} onBundles={setBundles} />
      ) : (
        <>
          <EmptyState>
            No federation: this node runs on its own. Start this node with <code>QIG_FEDERATION=central</code>{' '}
            to accept edges, or join one with <code>qig federation join URL TOKEN</code>.
          </EmptyState>
          <SnapshotNote snapshot={federation.snapshot} now={now} />
        </>
      )}
    </Panel>
  );
}
