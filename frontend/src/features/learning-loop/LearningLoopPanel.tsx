import { useEffect, useState } from 'react';
import { EmptyState, Panel } from '../dashboard/Panel';
import { duration, parseTime } from '../dashboard/format';
import { CycleTimeline } from './CycleTimeline';
import { runCycle, setLoopEnabled } from './loopApi';
import type { Cycle, LoopState } from './types';
import { useLearningLoop } from './useLearningLoop';
import './learning-loop.css';

/** Who set the switch as it is, from `enabled_source` and `enabled_by`. */
export function switchedBy(loop: Pick<LoopState, 'enabled' | 'enabled_source' | 'enabled_by'>): string {
  const word = loop.enabled ? 'on' : 'off';
  switch (loop.enabled_source) {
    case 'admin':
      return `switched ${word} by ${loop.enabled_by ?? 'an admin'}`;
    case 'modelfile':
      return `switched ${word} by the modelfile of ${loop.enabled_by ?? 'the served model'}`;
    default:
      return `switched ${word} in the server's settings`;
  }
}

/** The header's state line at `now` (ms): running, queued, off (and by whom), or on with a countdown. */
export function stateText(loop: LoopState, queued: boolean, now: number): string {
  if (loop.running) return 'Running a cycle…';
  if (queued) return 'A cycle is queued…';
  if (!loop.enabled) return `Off (${switchedBy(loop)})`;
  const next = parseTime(loop.next_cycle_at);
  if (next === null) return 'On';
  const left = Math.ceil((next - now) / 1000);
  return left > 0 ? `On — next cycle in ${duration(left)}` : 'On — next cycle due now';
}

/** The clock, read every second while `ticking` (and once as soon as it starts). */
function useNow(ticking: boolean): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    if (!ticking) return;
    const tick = () => setNow(Date.now());
    const first = setTimeout(tick, 0);
    const every = setInterval(tick, 1000);
    return () => {
      clearTimeout(first);
      clearInterval(every);
    };
  }, [ticking]);
  return now;
}

/**
 * The autonomous learning loop (issue 12 item 6): whether it is on, when it runs next, whether the
 * node is idle enough, and a timeline of its cycles with what each learned; staff switch it and
 * run a cycle at once. Everything shown is what the server sent.
 */
export function LearningLoopPanel() {
  const { loop, cycles, cyclesLoaded, loopError, cyclesError, updateLoop, updateCycle } = useLearningLoop();
  const queued = cycles[0]?.status === 'queued';
  const inProgress = Boolean(loop?.running) || queued || cycles[0]?.status === 'running';

  return (
    <Panel id="learning-loop" title="Learning loop" className="learning-loop">
      {loop && <LoopHeader loop={loop} queued={queued} />}
      {loop?.can_control && (
        <LoopControls loop={loop} inProgress={inProgress} onLoop={updateLoop} onCycle={updateCycle} />
      )}
      {loop && !loop.can_control && (
        <p className="muted dash-small">Only admins can switch the loop or run a cycle.</p>
      )}
      {[loopError, cyclesError].map(
        (error) =>
          error && (
            <p key={error} className="learning-loop__error" role="alert">
              {error}
            </p>
          ),
      )}
      {(!loop && !loopError) || (!cyclesLoaded && !cyclesError) ? (
        <EmptyState>Loading the learning loop…</EmptyState>
      ) : cycles.length > 0 ? (
        <CycleTimeline cycles={cycles} />
      ) : (
        cyclesLoaded && (
          <EmptyState>
            No cycles yet.
            {loop &&
              ` The loop runs when the node has been idle for ${loop.idle_s} s, at most every ${loop.interval_s} s; it learns from corrections, approved answers and vocabulary gaps.`}
          </EmptyState>
        )
      )}
    </Panel>
  );
}

function LoopHeader({ loop, queued }: { loop: LoopState; queued: boolean }) {
  const now = useNow(loop.enabled && !loop.running && loop.next_cycle_at !== null);
  const by = switchedBy(loop);
  return (
    <div className="learning-loop__header">
      <p className="learning-loop__state" data-testid="loop-state">
        {stateText(loop, queued, now)}
      </p>
      <p className="learning-loop__idle dash-small" data-testid="loop-idle">
        {loop.idle.idle ? 'Node idle' : 'Node busy'}: {loop.idle.reason}
      </p>
      <p className="muted dash-small" data-testid="loop-schedule">
        {by.charAt(0).toUpperCase() + by.slice(1)} · at most every {loop.interval_s} s, after {loop.idle_s} s
        idle · up to {loop.max_actions} actions a cycle
      </p>
    </div>
  );
}

interface ControlsProps {
  loop: LoopState;
  /** A cycle is queued or running: another cannot start. */
  inProgress: boolean;
  onLoop: (loop: LoopState) => void;
  onCycle: (cycle: Cycle) => void;
}

/** Staff only: the switch (PATCH) and "run one cycle now" (POST); failures are said inline. */
function LoopControls({ loop, inProgress, onLoop, onCycle }: ControlsProps) {
  const [pending, setPending] = useState<'switch' | 'run' | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function send<T>(which: 'switch' | 'run', call: () => Promise<T>, done: (row: T) => void) {
    setPending(which);
    setError(null);
    try {
      done(await call());
    } catch (failure) {
      const what = which === 'switch' ? 'Could not switch the loop' : 'Could not start a cycle';
      setError(`${what}: ${(failure as Error).message}`);
    } finally {
      setPending(null);
    }
  }

  return (
    <div className="learning-loop__controls">
      <button
        type="button"
        role="switch"
        aria-checked={loop.enabled}
        className="loop-switch"
        disabled={pending === 'switch'}
        onClick={() => void send('switch', () => setLoopEnabled(!loop.enabled), onLoop)}
      >
        <span className="loop-switch__track" aria-hidden="true">
          <span className="loop-switch__thumb" />
        </span>
        Autonomous learning
      </button>
      <button
        type="button"
        className="button"
        disabled={inProgress || pending === 'run'}
        onClick={() => void send('run', runCycle, onCycle)}
      >
        Run one cycle now
      </button>
      {error && (
        <p className="learning-loop__error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
