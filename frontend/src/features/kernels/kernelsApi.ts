import { api } from '../../api/client';
import type { KernelVersion, RollbackResult } from './types';

const kernelPath = (index: number) => `/api/v1/kernels/${index}/`;

export const listVersions = (index: number) => api.get<KernelVersion[]>(`${kernelPath(index)}versions/`);
export const rollbackKernel = (index: number) => api.post<RollbackResult>(`${kernelPath(index)}rollback/`);
