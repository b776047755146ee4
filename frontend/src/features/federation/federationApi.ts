import { api } from '../../api/client';
import type { CreatedNode, FederationNode, JoinToken, NodePackets, NodeSize } from './types';

export const NODES_PATH = '/api/v1/nodes/';
export const nodePath = (id: number) => `${NODES_PATH}${id}/`;
export const revokePath = (id: number) => `${nodePath(id)}revoke/`;
export const tokenPath = (id: number) => `${nodePath(id)}token/`;
export const packetsPath = (id: number) => `${nodePath(id)}packets/`;

export const addNode = (name: string, size: NodeSize) => api.post<CreatedNode>(NODES_PATH, { name, size });
export const revokeNode = (id: number) => api.post<FederationNode>(revokePath(id));
export const newJoinToken = (id: number) => api.post<JoinToken>(tokenPath(id));
export const getPackets = (id: number) => api.get<NodePackets>(packetsPath(id));
