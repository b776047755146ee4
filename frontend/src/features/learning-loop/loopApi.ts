import { api } from '../../api/client';
import type { Page } from '../jobs/types';
import type { Cycle, LoopState } from './types';

export const LOOP_PATH = '/api/v1/learning/loop/';
export const RUN_PATH = `${LOOP_PATH}run/`;
/** The newest cycles first; the panel shows 10 and keeps the rest for rows that arrive live. */
export const CYCLES_PATH = '/api/v1/learning/cycles/?page_size=20';

export const getLoop = () => api.get<LoopState>(LOOP_PATH);
export const setLoopEnabled = (enabled: boolean) => api.patch<LoopState>(LOOP_PATH, { enabled });
export const runCycle = () => api.post<Cycle>(RUN_PATH);
export const listCycles = () => api.get<Page<Cycle>>(CYCLES_PATH);
