import { useCallback, useReducer } from 'react';
import { useTelemetryTopic } from '../telemetry/useTelemetry';
import type {
  CentralLink,
  FederationHistory,
  FederationNode,
  FederationRole,
  NodeIdentity,
  NodeSize,
} from './types';

/** The federation as the panel shows it: the topic's last message, with what REST answered put over it. */
export interface Federation {
  role: FederationRole;
  /** Null when the server did not say (an older server). */
  size: NodeSize | null;
  kernels: number | null;
  node: NodeIdentity;
  central: CentralLink | null;
  nodes: FederationNode[];
}

type Action = { type: 'history'; federation: Federation } | { type: 'node'; node: FederationNode };

/**
 * The topic's message, with defaults for what an older server leaves out: without `role`, a list
 * of nodes means this node is their central, and no list means it runs alone.
 */
export function fromHistory(payload: Partial<FederationHistory>): Federation {
  const nodes = Array.isArray(payload.nodes) ? payload.nodes : [];
  const role: FederationRole =
    payload.role === 'alone' || payload.role === 'central' || payload.role === 'edge'
      ? payload.role
      : nodes.length > 0
        ? 'central'
        : 'alone';
  return {
    role,
    size: payload.size ?? null,
    kernels: typeof payload.kernels === 'number' ? payload.kernels : null,
    node: payload.node ?? { id: null, name: '' },
    central: payload.central ?? null,
    nodes,
  };
}

/** `nodes` with `node` replacing the row of the same id, or added at the end. */
function upsert(nodes: readonly FederationNode[], node: FederationNode): FederationNode[] {
  const at = nodes.findIndex((n) => n.id === node.id);
  if (at < 0) return [...nodes, node];
  const next = nodes.slice();
  next[at] = { ...nodes[at], ...node };
  return next;
}

function reducer(state: Federation | null, action: Action): Federation | null {
  switch (action.type) {
    case 'history':
      return action.federation;
    case 'node':
      return state && { ...state, nodes: upsert(state.nodes, action.node) };
  }
}

/**
 * The `federation` topic's `federation.history` (sent on subscribe and on every change); null
 * until the first message. `updateNode` puts a row the REST API answered (a node added or
 * revoked) into the table at once, before the topic says the same.
 */
export function useFederation() {
  const [federation, dispatch] = useReducer(reducer, null);

  useTelemetryTopic<Partial<FederationHistory> | { kind: string }>('federation', ({ payload }) => {
    if (payload && payload.kind === 'federation.history') {
      dispatch({ type: 'history', federation: fromHistory(payload as Partial<FederationHistory>) });
    }
  });

  const updateNode = useCallback((node: FederationNode) => dispatch({ type: 'node', node }), []);

  return { federation, updateNode };
}
