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
