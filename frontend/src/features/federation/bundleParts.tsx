import { useCallback, useRef, useState } from 'react';
import { snapshotText } from './fedFormat';
import type { SnapshotImport } from './types';

/** A bundle's or a round's state as a badge, coloured by it (`fed-bundle--not-promoted`, …). */
export function StateBadge({ state, kind = 'bundle' }: { state: string; kind?: 'bundle' | 'round' }) {
  return (
    <span
      className={`badge fed-${kind} fed-${kind}--${state.replace(/\s+/g, '-')}`}
      data-testid={`${kind}-status`}
    >
      {state}
    </span>
  );
}

/** The last snapshot this node imported (docs/snapshots.md), when there is one. */
export function SnapshotNote({ snapshot, now }: { snapshot: SnapshotImport | null; now: number }) {
  if (!snapshot) return null;
  return (
    <p
      className="muted dash-small fed-snapshot"
      data-testid="federation-snapshot"
      title={snapshot.imported_at ?? ''}
    >
      {snapshotText(snapshot, now)}
    </p>
  );
}

export interface Action {
  /** Running: its buttons are disabled. */
  busy: boolean;
  /** What the last success said (a status line). */
  done: string | null;
  /** Why the last try failed (the server's `detail` when it gave one). */
  error: string | null;
  /**
   * Runs `call`; what it returns is shown as done, a failure as `Could not <what>: <why>`. A
   * second run while one is going is ignored.
   */
  run: (what: string, call: () => Promise<string>) => Promise<void>;
}

/** One admin action at a time, with what it said last. */
export function useAction(): Action {
  const [busy, setBusy] = useState(false);
  const [done, setDone] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const running = useRef(false);

  const run = useCallback(async (what: string, call: () => Promise<string>) => {
    if (running.current) return;
    running.current = true;
    setBusy(true);
    setDone(null);
    setError(null);
    try {
      setDone(await call());
    } catch (failure) {
      setError(`Could not ${what}: ${(failure as Error).message}`);
    } finally {
      running.current = false;
      setBusy(false);
    }
  }, []);

  return { busy, done, error, run };
}

/** What an action said last: its success as a status, its failure as an alert. */
export function ActionOutcome({ action, testId }: { action: Action; testId: string }) {
  return (
    <>
      {action.done && (
        <p className="dash-small fed-done" role="status" data-testid={`${testId}-done`}>
          {action.done}
        </p>
      )}
      {action.error && (
        <p className="fed__error" role="alert" data-testid={`${testId}-error`}>
          {action.error}
        </p>
      )}
    </>
  );
}
