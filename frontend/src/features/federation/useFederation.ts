import { useCallback, useReducer } from 'react';
import { useTelemetryTopic } from '../telemetry/useTelemetry';
import type {
  BundleRow,
  BundlesView,
  CentralLink,
  FederationHistory,
  FederationNode,
  FederationRole,
  FlowerRound,
  FlowerRoundMessage,
  NodeIdentity,
  NodeSize,
  SnapshotImport,
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
  /** Update bundles, and on central the learnings and what each edge runs (empty lists when unsaid). */
  bundles: Required<BundlesView>;
  /** The last snapshot this node imported, or null. */
  snapshot: SnapshotImport | null;
}

interface State {
  federation: Federation | null;
  /** Flower rounds heard live (`federation.round`), by id. */
  rounds: Record<number, FlowerRound>;
}

type Action =
  | { type: 'history'; federation: Federation }
  | { type: 'node'; node: FederationNode }
  | { type: 'bundle'; bundle: BundleRow }
  | { type: 'bundles'; bundles: BundlesView }
  | { type: 'round'; round: FlowerRound };

const list = <T>(value: unknown): T[] => (Array.isArray(value) ? (value as T[]) : []);

/** The bundles part of a message or of the bundles API, with empty lists for what it leaves out. */
export function fromBundles(view: Partial<BundlesView> | null | undefined): Required<BundlesView> {
  return {
    bundles: list<BundleRow>(view?.bundles),
    learnings: list(view?.learnings),
    edges: list(view?.edges),
  };
}

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
    bundles: fromBundles(payload.bundles),
    snapshot: payload.snapshot && typeof payload.snapshot === 'object' ? payload.snapshot : null,
  };
}

/** `rows` with `row` replacing the row of the same id, or added at the end (or the front). */
function upsert<T extends { id: number }>(rows: readonly T[], row: T, front = false): T[] {
  const at = rows.findIndex((r) => r.id === row.id);
  if (at < 0) return front ? [row, ...rows] : [...rows, row];
  const next = rows.slice();
  next[at] = { ...rows[at], ...row };
  return next;
}

function withFederation(state: State, change: (federation: Federation) => Federation): State {
  return state.federation ? { ...state, federation: change(state.federation) } : state;
}

function reducer(state: State, action: Action): State {
  switch (action.type) {
    case 'history':
      return { ...state, federation: action.federation };
    case 'node':
      return withFederation(state, (f) => ({ ...f, nodes: upsert(f.nodes, action.node) }));
    case 'bundle':
      return withFederation(state, (f) => ({
        ...f,
        bundles: { ...f.bundles, bundles: upsert(f.bundles.bundles, action.bundle, true) },
      }));
    case 'bundles':
      return withFederation(state, (f) => ({ ...f, bundles: fromBundles(action.bundles) }));
    case 'round':
      return { ...state, rounds: { ...state.rounds, [action.round.id]: action.round } };
  }
}

const INITIAL: State = { federation: null, rounds: {} };

/**
 * The `federation` topic: its `federation.history` (sent on subscribe and on every change; null
 * until the first) and the `federation.round` messages of Flower rounds (by id). `updateNode`,
 * `updateBundle` and `setBundles` put what the REST API answered (a node added or revoked, a
 * bundle queued or published, the bundles read again) into the panel at once, before the topic
 * says the same.
 */
export function useFederation() {
  const [state, dispatch] = useReducer(reducer, INITIAL);

  useTelemetryTopic<Partial<FederationHistory> | Partial<FlowerRoundMessage> | { kind: string }>(
    'federation',
    ({ payload }) => {
      if (!payload) return;
      if (payload.kind === 'federation.history') {
        dispatch({ type: 'history', federation: fromHistory(payload as Partial<FederationHistory>) });
      } else if (payload.kind === 'federation.round' && typeof (payload as FlowerRound).id === 'number') {
        dispatch({ type: 'round', round: payload as FlowerRoundMessage });
      }
    },
  );

  const updateNode = useCallback((node: FederationNode) => dispatch({ type: 'node', node }), []);
  const updateBundle = useCallback((bundle: BundleRow) => dispatch({ type: 'bundle', bundle }), []);
  const setBundles = useCallback((bundles: BundlesView) => dispatch({ type: 'bundles', bundles }), []);

  return { federation: state.federation, rounds: state.rounds, updateNode, updateBundle, setBundles };
}
