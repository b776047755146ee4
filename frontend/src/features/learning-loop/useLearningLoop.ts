import { useCallback, useEffect, useReducer, useRef } from 'react';
import { useTelemetryTopic } from '../telemetry/useTelemetry';
import { getLoop, listCycles } from './loopApi';
import { isFinished, type Cycle, type LiveLoopState, type LoopEvent, type LoopState } from './types';

/** Cycles kept in memory (the page asked for); the panel shows fewer. */
export const CYCLES_KEPT = 20;

interface State {
  loop: LoopState | null;
  /** Newest first (by id: the server numbers cycles in the order it creates them). */
  cycles: Cycle[];
  cyclesLoaded: boolean;
  /** Why the loop could not be read (the last try); cleared when it is read. */
  loopError: string | null;
  /** Why the cycles could not be read. */
  cyclesError: string | null;
}

type Action =
  | { type: 'loop'; loop: LiveLoopState }
  | { type: 'cycles'; rows: Cycle[] }
  | { type: 'cycle'; cycle: Cycle }
  | { type: 'error'; of: 'loopError' | 'cyclesError'; message: string };

/** `rows` with `newer` put over them by id, newest first, capped. */
function merge(rows: readonly Cycle[], newer: readonly Cycle[]): Cycle[] {
  const byId = new Map(rows.map((c) => [c.id, c]));
  for (const c of newer) byId.set(c.id, c);
  return [...byId.values()].sort((a, b) => b.id - a.id).slice(0, CYCLES_KEPT);
}

/** The loop as one cycle's news changes it: only one cycle runs at a time (the server says 409). */
function withCycle(loop: LoopState, cycle: Cycle): LoopState {
  const latest = !loop.last_cycle || cycle.id >= loop.last_cycle.id;
  const running = cycle.status === 'running' ? true : isFinished(cycle) && latest ? false : loop.running;
  return { ...loop, running, last_cycle: latest ? cycle : loop.last_cycle };
}

function reducer(state: State, action: Action): State {
  switch (action.type) {
    case 'loop': {
      // The topic's copy is the same for everyone: it has no `can_control`; keep this user's.
      const canControl = action.loop.can_control ?? state.loop?.can_control ?? false;
      return { ...state, loop: { ...action.loop, can_control: canControl }, loopError: null };
    }
    case 'cycles':
      // Cycles heard of live while the list was on its way are newer than the list's copies.
      return { ...state, cycles: merge(action.rows, state.cycles), cyclesLoaded: true, cyclesError: null };
    case 'cycle':
      return {
        ...state,
        cycles: merge(state.cycles, [action.cycle]),
        loop: state.loop && withCycle(state.loop, action.cycle),
      };
    case 'error':
      return { ...state, [action.of]: action.message };
  }
}

/**
 * The learning loop: `GET loop` and the newest cycles once, then the `learning` topic's
 * `learning.cycle` and `learning.loop` events. The loop is read again when a cycle finishes,
 * because only the server knows when the next one is due.
 */
export function useLearningLoop() {
  const [state, dispatch] = useReducer(reducer, {
    loop: null,
    cycles: [],
    cyclesLoaded: false,
    loopError: null,
    cyclesError: null,
  });

  const readLoop = useCallback((stillWanted: () => boolean = () => true) => {
    getLoop().then(
      (loop) => stillWanted() && dispatch({ type: 'loop', loop }),
      (failure: unknown) =>
        stillWanted() &&
        dispatch({
          type: 'error',
          of: 'loopError',
          message: `Could not read the learning loop: ${(failure as Error).message}`,
        }),
    );
  }, []);

  useEffect(() => {
    let current = true;
    readLoop(() => current);
    listCycles().then(
      (page) => current && dispatch({ type: 'cycles', rows: page.results }),
      (failure: unknown) =>
        current &&
        dispatch({
          type: 'error',
          of: 'cyclesError',
          message: `Could not read the cycles: ${(failure as Error).message}`,
        }),
    );
    return () => {
      current = false;
    };
  }, [readLoop]);

  const known = useRef(state.cycles);
  useEffect(() => {
    known.current = state.cycles;
  });

  useTelemetryTopic<LoopEvent | { kind: string }>('learning', ({ payload }) => {
    if (payload.kind === 'learning.loop' && 'loop' in payload) {
      dispatch({ type: 'loop', loop: payload.loop });
    } else if (payload.kind === 'learning.cycle' && 'cycle' in payload) {
      const before = known.current.find((c) => c.id === payload.cycle.id);
      dispatch({ type: 'cycle', cycle: payload.cycle });
      if (isFinished(payload.cycle) && !(before && isFinished(before))) readLoop();
    }
  });

  /** Put what the server answered to a control (the switch, run now) into the panel. */
  const updateLoop = useCallback((loop: LoopState) => dispatch({ type: 'loop', loop }), []);
  const updateCycle = useCallback((cycle: Cycle) => dispatch({ type: 'cycle', cycle }), []);

  return { ...state, updateLoop, updateCycle };
}
