import { api } from '../../api/client';
import type { Job, Page } from './types';

export const JOBS_PATH = '/api/v1/jobs/';

export interface QueueJobRequest {
  kind: string;
  priority: number;
  datasets: number[];
  target_kernels: number[];
  hyperparameters: Record<string, number | string>;
}

export const listJobs = () => api.get<Page<Job>>(JOBS_PATH);
export const getJob = (id: number) => api.get<Job>(`${JOBS_PATH}${id}/`);
export const queueJob = (body: QueueJobRequest) => api.post<Job>(JOBS_PATH, body);
export type JobAction = 'pause' | 'resume' | 'cancel';
export const controlJob = (id: number, action: JobAction) => api.post<Job>(`${JOBS_PATH}${id}/${action}/`);
export const reprioritiseJob = (id: number, priority: number) =>
  api.post<Job>(`${JOBS_PATH}${id}/reprioritise/`, { priority });
