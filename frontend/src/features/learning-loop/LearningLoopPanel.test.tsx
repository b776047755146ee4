import { act, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { json, stubServer, type Route } from '../../test/http';
import { renderLive } from '../dashboard/testing';
import { LearningLoopPanel, stateText, switchedBy } from './LearningLoopPanel';
import { CYCLES_PATH, LOOP_PATH, RUN_PATH } from './loopApi';
import type { Cycle, LoopState } from './types';

const T0 = Date.UTC(2026, 11, 7, 1, 2, 3);
const iso = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();

function loopState(overrides: Partial<LoopState> = {}): LoopState {
  return {
    enabled: true,
    enabled_source: 'setting',
    enabled_by: null,
    interval_s: 300,
    idle_s: 60,
    max_actions: 3,
    idle: {
      idle: false,
      reason: 'a request is in progress (1 in flight)',
      last_request_at: iso(0),
      in_flight: 1,
      running_jobs: 0,
    },
    next_cycle_at: iso(300),
    running: false,
    last_cycle: null,
    can_control: true,
    ...overrides,
  };
}

function cycle(id: number, overrides: Partial<Cycle> = {}): Cycle {
  return {
    id,
    trigger: 'schedule',
    status: 'skipped',
    reason: `not idle: a request ${id} s ago (needs 60 s without one)`,
    started_at: iso(id),
    finished_at: iso(id + 1),
    signals_read: 0,
    signals_by_kind: {},
    opportunities: [],
    actions: [],
    sync: null,
    ...overrides,
  };
}

const page = (results: Cycle[]) => ({ count: results.length, next: null, previous: null, results });

/** A cycle that trained two kernels: one promoted, one kept back by the gate. */
const LEARNED = cycle(7, {
  status: 'done',
  reason: '2 adapter jobs: 1 promoted, 1 not promoted',
  signals_read: 4,
  signals_by_kind: { correction: 1, accepted: 2, unknown_tokens: 1 },
  opportunities: [
    {
      kind: 'correction',
      score: 0.9312,
      kernel: 57,
      signals: [12, 13],
      summary: '1 correction on kernel 57',
      chosen: true,
      why: 'top 3 by score',
    },
    {
      kind: 'explore',
      score: 0.125,
      kernel: null,
      signals: [],
      summary: 'explore a standby kernel',
      chosen: false,
      why: 'below the top 3',
    },
  ],
  actions: [
    {
      kind: 'adapter_job',
      kernel: 57,
      job: 31,
      status: 'completed',
      promoted: true,
      heldout: { own_before: 5.1, own_after: 2.3, served_change: 0.004, own_is_heldout: false },
      summary: 'kernel 57 promoted',
    },
    {
      kind: 'adapter_job',
      kernel: 12,
      job: 32,
      status: 'completed',
      promoted: false,
      heldout: { own_before: 4.2, own_after: 4.05, served_change: -0.0123, own_is_heldout: true },
      summary: 'kernel 12 not promoted: no better on its held-out text',
    },
  ],
  sync: { federated: false, outbox: 'recorded (this node is not federated)' },
});

function serve(loop: LoopState, cycles: Cycle[], more: Record<string, Route> = {}) {
  return stubServer({
    [`GET ${LOOP_PATH}`]: () => json(200, loop),
    [`GET ${CYCLES_PATH}`]: () => json(200, page(cycles)),
    ...more,
  });
}

beforeEach(() => {
  document.cookie = 'csrftoken=csrf-from-cookie; path=/';
});

afterEach(() => {
  vi.useRealTimers();
});

describe('LearningLoopPanel', () => {
  it('says how the loop works while it has no cycle, with the schedule the server sent', async () => {
    serve(loopState({ idle_s: 90, interval_s: 600 }), []);
    renderLive(<LearningLoopPanel />);
    expect(screen.getByText('Loading the learning loop…')).toBeInTheDocument();
    expect(
      await screen.findByText(
        'No cycles yet. The loop runs when the node has been idle for 90 s, at most every 600 s; it learns from corrections, approved answers and vocabulary gaps.',
      ),
    ).toBeInTheDocument();
    expect(screen.getByTestId('loop-idle')).toHaveTextContent(
      'Node busy: a request is in progress (1 in flight)',
    );
    expect(screen.getByTestId('loop-schedule')).toHaveTextContent(
      "Switched on in the server's settings · at most every 600 s, after 90 s idle · up to 3 actions a cycle",
    );
  });

  it('lists the cycles newest first with what they read, found and did, and the gate figures', async () => {
    const older = Array.from({ length: 11 }, (_, i) => cycle(i + 1));
    serve(loopState(), [LEARNED, ...older.slice(0, 6).reverse(), ...older.slice(7).reverse()]);
    renderLive(<LearningLoopPanel />);
    const timeline = await screen.findByRole('list', { name: 'Learning cycles, newest first' });
    const rows = within(timeline)
      .getAllByRole('listitem')
      .filter((li) => /^cycle-\d+$/.test(li.dataset.testid ?? ''));
    expect(rows.map((li) => li.dataset.testid)).toEqual([
      'cycle-11',
      'cycle-10',
      'cycle-9',
      'cycle-8',
      'cycle-7',
      'cycle-6',
      'cycle-5',
      'cycle-4',
      'cycle-3',
      'cycle-2',
    ]);

    const learned = screen.getByTestId('cycle-7');
    expect(within(learned).getByTestId('cycle-status')).toHaveTextContent('done');
    expect(learned).toHaveTextContent('schedule');
    expect(learned).toHaveTextContent('2 adapter jobs: 1 promoted, 1 not promoted');
    expect(within(learned).getByTestId('cycle-signals')).toHaveTextContent(
      '4 signals read (1 correction, 2 accepted, 1 unknown tokens)',
    );
    const [chosen, passed] = within(learned).getAllByTestId('cycle-opportunity');
    expect(chosen).toHaveTextContent(
      'correction 0.93 · kernel 57 · chosen (top 3 by score): 1 correction on kernel 57',
    );
    expect(passed).toHaveTextContent('explore 0.13 · not chosen (below the top 3): explore a standby kernel');
    const [promoted, kept] = within(learned).getAllByTestId('cycle-action');
    expect(promoted).toHaveTextContent(
      'adapter job · kernel 57 · job #31 · completed — promoted: held-in loss 5.100 → 2.300, general held-out as served +0.4 %',
    );
    expect(kept).toHaveTextContent(
      'adapter job · kernel 12 · job #32 · completed — not promoted: held-out loss 4.200 → 4.050, general held-out as served −1.2 %',
    );
    expect(within(kept!).getByText('not promoted')).toHaveClass('loop-kept');
    expect(learned).toHaveTextContent('Sync: recorded (this node is not federated)');
    expect(screen.getByTestId('cycle-3')).toHaveTextContent('not idle: a request 3 s ago');
  });

  it('switches the loop with a PATCH and shows what the server answered', async () => {
    const requests = serve(loopState(), [], {
      [`PATCH ${LOOP_PATH}`]: () =>
        json(
          200,
          loopState({ enabled: false, enabled_source: 'admin', enabled_by: 'admin', next_cycle_at: null }),
        ),
    });
    renderLive(<LearningLoopPanel />);
    const toggle = await screen.findByRole('switch', { name: 'Autonomous learning' });
    expect(toggle).toHaveAttribute('aria-checked', 'true');
    await userEvent.click(toggle);
    await waitFor(() => expect(toggle).toHaveAttribute('aria-checked', 'false'));
    expect(screen.getByTestId('loop-state')).toHaveTextContent('Off (switched off by admin)');
    const patch = requests.find((r) => r.method === 'PATCH');
    expect(patch?.body).toEqual({ enabled: false });
    expect(patch?.headers['X-CSRFToken']).toBe('csrf-from-cookie');
  });

  it('runs a cycle now, follows it live, and reads the loop again when it finishes', async () => {
    let loopReads = 0;
    const after = loopState({ next_cycle_at: iso(900), last_cycle: cycle(8, { status: 'done' }) });
    const requests = stubServer({
      [`GET ${LOOP_PATH}`]: () => json(200, ++loopReads === 1 ? loopState() : after),
      [`GET ${CYCLES_PATH}`]: () => json(200, page([cycle(7)])),
      [`POST ${RUN_PATH}`]: () =>
        json(202, cycle(8, { trigger: 'manual', status: 'queued', reason: '', started_at: null })),
    });
    const { send } = renderLive(<LearningLoopPanel />);
    const run = await screen.findByRole('button', { name: 'Run one cycle now' });
    await userEvent.click(run);

    const row = await screen.findByTestId('cycle-8');
    expect(within(row).getByTestId('cycle-status')).toHaveTextContent('queued');
    expect(row).toHaveTextContent('manual');
    expect(screen.getByTestId('loop-state')).toHaveTextContent('A cycle is queued…');
    expect(run).toBeDisabled();
    expect(requests.find((r) => r.method === 'POST')?.headers['X-CSRFToken']).toBe('csrf-from-cookie');

    send('learning', { kind: 'learning.cycle', cycle: cycle(8, { trigger: 'manual', status: 'running' }) });
    expect(screen.getByTestId('loop-state')).toHaveTextContent('Running a cycle…');
    expect(within(screen.getByTestId('cycle-8')).getByTestId('cycle-status')).toHaveTextContent('running');
    expect(loopReads).toBe(1);

    const done = cycle(8, { trigger: 'manual', status: 'done', reason: 'nothing worth learning yet' });
    send('learning', { kind: 'learning.cycle', cycle: done });
    send('learning', { kind: 'learning.cycle', cycle: done });
    expect(screen.getByTestId('cycle-8')).toHaveTextContent('nothing worth learning yet');
    await waitFor(() => expect(loopReads).toBe(2));
    expect(screen.getAllByTestId(/^cycle-\d+$/)).toHaveLength(2);
    expect(run).toBeEnabled();
  });

  it('shows why a cycle could not start (409) beside the button', async () => {
    serve(loopState(), [], {
      [`POST ${RUN_PATH}`]: () => json(409, { detail: 'a cycle is already running' }),
    });
    renderLive(<LearningLoopPanel />);
    await userEvent.click(await screen.findByRole('button', { name: 'Run one cycle now' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Could not start a cycle: a cycle is already running',
    );
  });

  it('offers no controls to a user who is not staff', async () => {
    serve(loopState({ can_control: false }), [LEARNED]);
    renderLive(<LearningLoopPanel />);
    expect(await screen.findByTestId('cycle-7')).toBeInTheDocument();
    expect(screen.getByText('Only admins can switch the loop or run a cycle.')).toBeInTheDocument();
    expect(screen.queryByRole('switch')).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Run one cycle now' })).not.toBeInTheDocument();
  });

  it('adds and updates rows from live cycles and takes a live switch change', async () => {
    const requests = serve(loopState(), []);
    const { send } = renderLive(<LearningLoopPanel />);
    await screen.findByText(/^No cycles yet/);

    send('learning', { kind: 'learning.cycle', cycle: cycle(9, { status: 'running', reason: '' }) });
    expect(within(screen.getByTestId('cycle-9')).getByTestId('cycle-status')).toHaveTextContent('running');
    send('learning', { kind: 'learning.cycle', cycle: { ...LEARNED, id: 10 } });
    expect(screen.getAllByTestId(/^cycle-\d+$/).map((li) => li.dataset.testid)).toEqual([
      'cycle-10',
      'cycle-9',
    ]);
    expect(within(screen.getByTestId('cycle-10')).getAllByTestId('cycle-action')).toHaveLength(2);

    // The topic's copy has no `can_control` (it is the same for every listener): the staff
    // user keeps the switch.
    const live: Partial<LoopState> = loopState({
      enabled: false,
      enabled_source: 'modelfile',
      enabled_by: 'qig-tutor',
      next_cycle_at: null,
    });
    delete live.can_control;
    send('learning', { kind: 'learning.loop', loop: live });
    expect(screen.getByRole('switch', { name: 'Autonomous learning' })).toHaveAttribute(
      'aria-checked',
      'false',
    );
    expect(screen.getByTestId('loop-state')).toHaveTextContent(
      'Off (switched off by the modelfile of qig-tutor)',
    );
    // Only the finished cycle 10 made the panel read the loop again.
    await waitFor(() => expect(requests.filter((r) => r.path === LOOP_PATH)).toHaveLength(2));
  });

  it('counts down to the next cycle from next_cycle_at', async () => {
    vi.useFakeTimers({ toFake: ['Date', 'setInterval', 'clearInterval'] });
    vi.setSystemTime(T0);
    serve(loopState({ next_cycle_at: iso(252) }), []);
    renderLive(<LearningLoopPanel />);
    expect(await screen.findByTestId('loop-state')).toHaveTextContent('On — next cycle in 4 min 12 s');
    act(() => vi.advanceTimersByTime(2000));
    expect(screen.getByTestId('loop-state')).toHaveTextContent('On — next cycle in 4 min 10 s');
    act(() => vi.advanceTimersByTime(250_000));
    expect(screen.getByTestId('loop-state')).toHaveTextContent('On — next cycle due now');
  });

  it('shows the error when the loop cannot be read', async () => {
    stubServer({
      [`GET ${LOOP_PATH}`]: () => json(500, { detail: 'database is locked' }),
      [`GET ${CYCLES_PATH}`]: () => json(200, page([])),
    });
    renderLive(<LearningLoopPanel />);
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Could not read the learning loop: database is locked',
    );
    expect(screen.getByText('No cycles yet.')).toBeInTheDocument();
    expect(screen.queryByRole('switch')).not.toBeInTheDocument();
  });

  it('words the state and who set the switch', () => {
    const now = T0;
    expect(stateText(loopState({ running: true }), false, now)).toBe('Running a cycle…');
    expect(stateText(loopState({ next_cycle_at: iso(44.2) }), false, now)).toBe('On — next cycle in 45 s');
    expect(stateText(loopState({ next_cycle_at: null }), false, now)).toBe('On');
    expect(switchedBy({ enabled: false, enabled_source: 'setting', enabled_by: null })).toBe(
      "switched off in the server's settings",
    );
    expect(switchedBy({ enabled: true, enabled_source: 'admin', enabled_by: 'root' })).toBe(
      'switched on by root',
    );
  });
});
