import { api } from '../../api/client';
import type {
  BundleRow,
  BundlesView,
  CreatedNode,
  FederationNode,
  FlowerRound,
  JoinToken,
  NodePackets,
  NodeSize,
  Page,
  RollbackResult,
} from './types';

export const NODES_PATH = '/api/v1/nodes/';
export const nodePath = (id: number) => `${NODES_PATH}${id}/`;
export const revokePath = (id: number) => `${nodePath(id)}revoke/`;
export const tokenPath = (id: number) => `${nodePath(id)}token/`;
export const packetsPath = (id: number) => `${nodePath(id)}packets/`;

export const addNode = (name: string, size: NodeSize) => api.post<CreatedNode>(NODES_PATH, { name, size });
export const revokeNode = (id: number) => api.post<FederationNode>(revokePath(id));
export const newJoinToken = (id: number) => api.post<JoinToken>(tokenPath(id));
export const getPackets = (id: number) => api.get<NodePackets>(packetsPath(id));

export const BUNDLES_PATH = '/api/v1/federation/bundles/';
export const ROLLBACK_PATH = '/api/v1/federation/bundle/rollback/';
export const ROUNDS_PATH = '/api/v1/federation/rounds/';

export const getBundles = () => api.get<BundlesView>(BUNDLES_PATH);
/** Central, staff: train on the new learnings (202, the `training` row). */
export const trainBundle = () => api.post<BundleRow>(BUNDLES_PATH, { train: true });
/** Central, staff: publish the served adapters as they are (201, the published row). */
export const publishBundle = () => api.post<BundleRow>(BUNDLES_PATH, { train: false });
/** Edge, staff: run the bundle before the current one again. */
export const rollbackBundle = () => api.post<RollbackResult>(ROLLBACK_PATH);

export const getRounds = () => api.get<Page<FlowerRound> | FlowerRound[]>(ROUNDS_PATH);
export const startRound = (kernels: number[], min_edges: number, rounds: number) =>
  api.post<FlowerRound>(ROUNDS_PATH, { kernels, min_edges, rounds });
