import { useCallback, useEffect, useReducer } from 'react';
import { useTelemetryTopic } from '../telemetry/useTelemetry';
import type { Upload, UploadStatusEvent } from './types';
import { listUploads } from './uploadsApi';

interface State {
  uploads: ReadonlyMap<number, Upload>;
  loaded: boolean;
  error: string | null;
}

type Action =
  | { type: 'rows'; rows: Upload[]; loaded?: boolean }
  | { type: 'remove'; id: number }
  | { type: 'error'; message: string };

function reducer(state: State, action: Action): State {
  switch (action.type) {
    case 'rows': {
      const uploads = new Map(state.uploads);
      for (const row of action.rows) uploads.set(row.id, row);
      return {
        uploads,
        loaded: state.loaded || Boolean(action.loaded),
        error: action.loaded ? null : state.error,
      };
    }
    case 'remove': {
      const uploads = new Map(state.uploads);
      uploads.delete(action.id);
      return { ...state, uploads };
    }
    case 'error':
      return { ...state, error: action.message };
  }
}

/** Uploads newest first: `GET /api/v1/uploads/`, then `upload.status` events on `learning`. */
export function useUploads() {
  const [state, dispatch] = useReducer(reducer, { uploads: new Map(), loaded: false, error: null });

  useEffect(() => {
    let current = true;
    listUploads().then(
      (page) => current && dispatch({ type: 'rows', rows: page.results, loaded: true }),
      (error: unknown) =>
        current &&
        dispatch({ type: 'error', message: `Could not load the uploads: ${(error as Error).message}` }),
    );
    return () => {
      current = false;
    };
  }, []);

  useTelemetryTopic<UploadStatusEvent | { kind: string }>('learning', ({ payload }) => {
    if (payload.kind === 'upload.status' && (payload as UploadStatusEvent).upload) {
      dispatch({ type: 'rows', rows: [(payload as UploadStatusEvent).upload] });
    }
  });

  const put = useCallback((upload: Upload) => dispatch({ type: 'rows', rows: [upload] }), []);
  const remove = useCallback((id: number) => dispatch({ type: 'remove', id }), []);
  const newestFirst = [...state.uploads.values()].sort(
    (a, b) => b.created_at.localeCompare(a.created_at) || b.id - a.id,
  );
  return { ...state, newestFirst, put, remove };
}
