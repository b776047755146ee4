// Shapes of the federation's JSON, written against the documented contract of the telemetry
// topic `federation` (`federation.history`) and of `/api/v1/nodes/`; kept beside the
// panel that is their only reader.

/** How this node takes part: on its own, as the central that edges join, or as an edge. */
export type FederationRole = 'alone' | 'central' | 'edge';

/** A constellation's size: `minimal` (3 kernels), `medium` (12) or `full` (240). */
export type NodeSize = 'minimal' | 'medium' | 'full';

export const NODE_SIZES: readonly NodeSize[] = ['minimal', 'medium', 'full'];

/** An edge's link to its central, as the edge sees it. */
export type CentralState = 'not joined' | 'connecting' | 'connected' | 'disconnected' | 'revoked';

/** An edge as its central sees it; `pending`: a join token was issued, the edge has not joined. */
export type NodeStatus = 'pending' | 'online' | 'offline' | 'revoked';

/** This node's own identity (the uuid is null until it has one). */
export interface NodeIdentity {
  id: string | null;
  name: string;
}

/** The edge's connection to its central (`central` on an edge, null elsewhere). */
export interface CentralLink {
  url: string;
  state: CentralState;
  since: string | null;
  last_error: string;
  /** Packets waiting for central's acknowledgement. */
  outbox: number;
  /** Packets central refused (kept with their reason). */
  rejected: number;
  /** Age of the oldest anchor version central has that this edge has not applied; 0 when up to date. */
  lag_s: number | null;
  applied_version: number;
}

/** Packets a minute, over the last minute. */
export interface PerMinute {
  in: number;
  out: number;
  rejected: number;
}

/** One edge node of a central: a row of the nodes table. */
export interface FederationNode {
  id: number;
  name: string;
  size: NodeSize;
  uuid: string | null;
  status: NodeStatus;
  joined_at: string | null;
  last_seen: string | null;
  lag_s: number | null;
  applied_version: number | null;
  packets_in: number;
  packets_rejected: number;
  duplicates: number;
  per_minute: PerMinute;
  join_expires_at: string | null;
  created_at: string;
}

/** What the `federation` topic sends on subscribe and whenever something changes. */
export interface FederationHistory {
  kind: 'federation.history';
  role: FederationRole;
  size: NodeSize;
  kernels: number;
  node: NodeIdentity;
  central: CentralLink | null;
  /** The central's edges; empty on any other role. */
  nodes: FederationNode[];
  /** The last snapshot this node imported (docs/snapshots.md), or null. */
  snapshot?: SnapshotImport | null;
  /** Update bundles (docs/federation.md, "Update bundles"); the same as `GET /api/v1/federation/bundles/`. */
  bundles?: BundlesView;
}

/** A join token, shown once: the server keeps only its hash. */
export interface JoinToken {
  join_token: string;
  join_command: string;
  join_expires_at: string | null;
}

/** `POST /api/v1/nodes/` (201): the new row and its first join token. */
export type CreatedNode = FederationNode & Omit<JoinToken, 'join_expires_at'>;

/** A packet an edge sent, as its central received it. */
export interface Packet {
  id: string;
  received_at: string;
  kernels: number[];
  bytes: number;
  duplicate: boolean;
}

/** A packet the central refused, and why. */
export interface Rejection {
  at: string;
  reason: string;
  bytes: number;
}

/** `GET /api/v1/nodes/{id}/packets/`: newest first, at most 50 each. */
export interface NodePackets {
  packets: Packet[];
  rejections: Rejection[];
}

/** The last snapshot a node imported: `<data dir>/snapshots-imported.json`. */
export interface SnapshotImport {
  version: string;
  imported_at: string | null;
  patterns: number;
  jobs: number;
}

/**
 * A bundle's state: on central `training` (its jobs run), `not promoted` (no kernel passed the
 * promotion gate), `published` or `failed`; on an edge `applied` (it runs it), `refused`
 * (verification failed) or `replaced` (a newer one, or a rollback, took its place).
 */
export type BundleStatus =
  'training' | 'not promoted' | 'published' | 'failed' | 'applied' | 'refused' | 'replaced';

/** One update bundle: built by central, or received by an edge. */
export interface BundleRow {
  id: number;
  /** Null until it is published. */
  version: number | null;
  status: BundleStatus;
  reason: string;
  /** `learnings`, `admin`, `flower round N`, … */
  source: string;
  kernels: number[];
  jobs: number[];
  /** Learnings it was trained on. */
  learnings: number;
  bytes: number;
  created_at: string;
  published_at: string | null;
  /** Edge: when it was applied, and how long verifying and swapping took. */
  applied_at: string | null;
  apply_ms: number | null;
}

/** Central: the learnings it received from one node for one kernel, and how many were trained on. */
export interface LearningCount {
  kernel: number;
  node: string;
  received: number;
  trained: number;
}

/**
 * Central: the bundle an edge says it runs. `version` 0: none yet; `status`: `applied`,
 * `refused bundle N: reason`, or empty until the edge reports.
 */
export interface EdgeBundle {
  node: string;
  version: number | null;
  status: string;
}

/** `GET /api/v1/federation/bundles/` and `federation.history`'s `bundles`: newest first, 20 at most. */
export interface BundlesView {
  bundles: BundleRow[];
  /** Central only. */
  learnings?: LearningCount[];
  /** Central only: the joined edges. */
  edges?: EdgeBundle[];
}

/** `POST /api/v1/federation/bundle/rollback/` (200): what the edge runs now. */
export interface RollbackResult {
  version: number;
  status: string;
  reason?: string;
}

/** A Flower round's state (docs/flower.md). */
export type RoundStatus = 'queued' | 'running' | 'gating' | 'completed' | 'failed';

/** An edge that replied in a Flower round, with its examples and training loss. */
export interface RoundEdgeIn {
  edge: string;
  examples: number;
  loss: number | null;
}

/** An edge asked in a Flower round that dropped out, and why. */
export interface RoundEdgeOut {
  edge: string;
  why: string;
}

/** One Flower round of one kernel: the edges' weighted loss and who replied. */
export interface RoundFigures {
  kernel: number;
  round: number;
  loss: number | null;
  examples: number;
  averaged: boolean;
  edges_in: RoundEdgeIn[];
  edges_out: RoundEdgeOut[];
  at: string;
}

/** The promotion gate's verdict on one kernel's averaged adapter. */
export interface RoundVerdict {
  promoted?: boolean;
  reason?: string;
  version?: string | number | null;
}

/** A start of federated adapter averaging: `GET /api/v1/federation/rounds/` and `federation.round`. */
export interface FlowerRound {
  id: number;
  kernels: number[];
  min_edges: number;
  rounds: number;
  status: RoundStatus;
  run_id: string;
  history: RoundFigures[];
  result: {
    kernels?: Record<string, RoundVerdict>;
    bundle?: { published?: boolean; version?: number | null; kernels?: number[]; error?: string };
  };
  error: string;
  created_at: string | null;
  started_at: string | null;
  finished_at: string | null;
}

/** The live message of a round on the `federation` topic. */
export type FlowerRoundMessage = FlowerRound & { kind: 'federation.round' };

/** A page of DRF's pagination. */
export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}
