import { useCallback, useEffect, useReducer, useRef } from 'react';
import { useTelemetryTopic } from '../telemetry/useTelemetry';
import { getJob, listJobs } from './jobsApi';
import { applyEvent, mergeRows, type JobMap } from './jobState';
import type { Job, JobsEvent } from './types';

interface State {
  jobs: JobMap;
  loaded: boolean;
  error: string | null;
}

type Action =
  | { type: 'rows'; rows: Job[]; loaded?: boolean }
  | { type: 'event'; event: JobsEvent }
  | { type: 'error'; message: string };

function reducer(state: State, action: Action): State {
  switch (action.type) {
    case 'rows':
      return {
        jobs: mergeRows(state.jobs, action.rows),
        loaded: state.loaded || Boolean(action.loaded),
        error: action.loaded ? null : state.error,
      };
    case 'event': {
      const jobs = applyEvent(state.jobs, action.event);
      const loaded = state.loaded || action.event.kind === 'jobs.history';
      return jobs === state.jobs && loaded === state.loaded ? state : { ...state, jobs, loaded };
    }
    case 'error':
      return { ...state, error: action.message };
  }
}

/**
 * The fine-tuning queue: `GET /api/v1/jobs/` once, then the `jobs` topic's events (status,
 * progress and, where the server sends it, the history on subscribe). A job first heard of in an
 * event is fetched for its full row.
 */
export function useJobs() {
  const [state, dispatch] = useReducer(reducer, { jobs: new Map(), loaded: false, error: null });
  const fetched = useRef(new Set<number>());

  useEffect(() => {
    let current = true;
    listJobs().then(
      (page) => current && dispatch({ type: 'rows', rows: page.results, loaded: true }),
      (error: unknown) =>
        current &&
        dispatch({ type: 'error', message: `Could not load the queue: ${(error as Error).message}` }),
    );
    return () => {
      current = false;
    };
  }, []);

  const known = useRef(state.jobs);
  useEffect(() => {
    known.current = state.jobs;
  });

  useTelemetryTopic<JobsEvent>('jobs', ({ payload }) => {
    dispatch({ type: 'event', event: payload });
    const id = (payload as { job?: unknown }).job;
    if (typeof id === 'number' && !known.current.has(id) && !fetched.current.has(id)) {
      fetched.current.add(id);
      getJob(id).then(
        (row) => dispatch({ type: 'rows', rows: [row] }),
        () => {}, // the event's own fields are still shown
      );
    }
  });

  /** Put a row the server answered with (after an admin action) into the queue. */
  const update = useCallback((row: Job) => dispatch({ type: 'rows', rows: [row] }), []);

  return { ...state, update };
}
