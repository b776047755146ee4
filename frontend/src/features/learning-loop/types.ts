// Shapes of the learning loop's JSON (issue 12 item 6), written against the documented contract of
// `GET/PATCH /api/v1/learning/loop/`, `POST /api/v1/learning/loop/run/` and
// `GET /api/v1/learning/cycles/`; kept beside the panel that is their only reader.

/** Whether the node is idle enough for a cycle, as the server judged it. */
export interface IdleState {
  idle: boolean;
  /** The judgement in words, e.g. "a request is in progress (1 in flight)". */
  reason: string;
  last_request_at: string | null;
  in_flight: number;
  running_jobs: number;
}

export type OpportunityKind = 'correction' | 'reinforce' | 'vocabulary' | 'constraint' | 'explore';

/** Something the cycle could learn from, scored; the best `max_actions` are chosen. */
export interface Opportunity {
  kind: OpportunityKind;
  score: number;
  kernel: number | null;
  /** Ids of the learning signals it came from. */
  signals: number[];
  summary: string;
  chosen: boolean;
  /** Why it was chosen or not, e.g. "top 3 by score". */
  why: string;
}

/** The promotion gate's figures for an adapter job (null until the job finishes). */
export interface ActionHeldout {
  own_before: number | null;
  own_after: number | null;
  /** Relative change of the general held-out loss as served (0.004 is +0.4 %). */
  served_change: number | null;
  /** False when the kernel's own loss was measured on held-in text (too little to hold out). */
  own_is_heldout: boolean;
}

export type LoopActionKind = 'adapter_job' | 'vocabulary' | 'constraint';
export type LoopActionStatus = 'queued' | 'running' | 'completed' | 'failed' | 'cancelled' | 'done';

/** What a cycle did about a chosen opportunity. */
export interface LoopAction {
  kind: LoopActionKind;
  kernel: number | null;
  job: number | null;
  status: LoopActionStatus;
  /** Null until the job finishes, or when it is not an adapter job. */
  promoted: boolean | null;
  heldout: ActionHeldout | null;
  summary: string;
}

export type CycleStatus = 'queued' | 'running' | 'done' | 'skipped' | 'failed';

/** One run of the loop: what it read, what it found, what it did. */
export interface Cycle {
  id: number;
  trigger: 'schedule' | 'manual';
  status: CycleStatus;
  /** Why it did nothing or failed, or a one-line summary when done. */
  reason: string;
  started_at: string | null;
  finished_at: string | null;
  signals_read: number;
  signals_by_kind: Record<string, number>;
  opportunities: Opportunity[];
  actions: LoopAction[];
  sync?: { federated: boolean; outbox: string; delta?: unknown } | null;
}

/** `GET /api/v1/learning/loop/`: the switch, its schedule and the node's idle state. */
export interface LoopState {
  enabled: boolean;
  enabled_source: 'setting' | 'admin' | 'modelfile';
  /** A username (admin) or a model's name (modelfile); null for the setting. */
  enabled_by: string | null;
  interval_s: number;
  idle_s: number;
  max_actions: number;
  idle: IdleState;
  /** Null when the loop is switched off. */
  next_cycle_at: string | null;
  /** A cycle is in progress now. */
  running: boolean;
  last_cycle: Cycle | null;
  /** The user is staff: the switch and "run now" are offered. */
  can_control: boolean;
}

/** What the `learning` topic carries for the loop. */
/** The loop as the topic carries it: the same for every listener, so without `can_control`. */
export type LiveLoopState = Omit<LoopState, 'can_control'> & { can_control?: boolean };

export type LoopEvent =
  { kind: 'learning.cycle'; cycle: Cycle } | { kind: 'learning.loop'; loop: LiveLoopState };

/** A cycle that will not change any more. */
export function isFinished(cycle: Pick<Cycle, 'status'>): boolean {
  return cycle.status === 'done' || cycle.status === 'skipped' || cycle.status === 'failed';
}
