// Shapes of the fine-tuning queue's JSON: `FineTuneJobSerializer` in learning/api.py and the
// `jobs` telemetry topic's events (docs/training.md, docs/ui-knowledge.md).

export type JobKind = 'coordizer' | 'pretrain' | 'adapter';
export type JobStatus = 'queued' | 'running' | 'paused' | 'completed' | 'failed' | 'cancelled';

export const JOB_KINDS: readonly JobKind[] = ['coordizer', 'pretrain', 'adapter'];
export const FINISHED_STATUSES: ReadonlySet<string> = new Set(['completed', 'failed', 'cancelled']);

/** The latest step's metrics, as the runner stores them on the job (`metrics`). */
export interface JobMetrics {
  loss?: number | null;
  lr?: number | null;
  grad_norm?: number | null;
  tokens_per_s?: number | null;
  kernel?: number | null;
  [name: string]: unknown;
}

/** One kernel of an adapter job: its held-out losses and whether its new version went live. */
export interface KernelEvaluation {
  kernel: number;
  promoted: boolean;
  reason: string;
  heldout: {
    own_before: number;
    own_after: number;
    general_before: number | null;
    general_after: number | null;
    general_change: number | null;
    served_before?: number | null;
    served_after?: number | null;
    served_change?: number | null;
    answered_after?: number | null;
    heldin_before: number | null;
    heldin_after: number | null;
    own_is_heldout: boolean;
  };
  radius?: number | null;
  version?: string;
  serving_before?: string;
}

/** An adapter job's held-out evaluation and promotion gate (`evaluation`, docs/training.md). */
export interface JobEvaluation {
  tolerance?: number;
  promoted?: number[];
  not_promoted?: number[];
  own_before?: number | null;
  own_after?: number | null;
  general_before?: number | null;
  general_after?: number | null;
  heldin_before?: number | null;
  heldin_after?: number | null;
  kernels?: KernelEvaluation[];
}

/** `GET /api/v1/jobs/` item. */
export interface Job {
  id: number;
  kind: JobKind | string;
  status: JobStatus | string;
  status_reason: string;
  priority: number;
  datasets: number[];
  target_kernels: number[];
  hyperparameters: Record<string, unknown>;
  /** 0..1 */
  progress: number;
  step: number;
  total_steps: number;
  eta_s: number | null;
  metrics: JobMetrics;
  /** Adapter jobs: per kernel, held-out losses before/after and the promotion (empty before). */
  evaluation?: JobEvaluation;
  device: string;
  /** A job that must complete before this one runs. */
  after?: number | null;
  error: string;
  error_kind?: string;
  created_by: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

/** DRF's page of a paginated list. */
export interface Page<T> {
  count: number;
  next: string | null;
  previous: string | null;
  results: T[];
}

/** `jobs` topic: a job changed status (queued, started, paused, finished…). */
export interface JobStatusEvent {
  kind: 'job.status';
  job: number;
  job_kind: string;
  status: string;
  status_reason?: string;
  progress?: number;
  step?: number;
  total_steps?: number;
  device?: string;
  error?: string;
  error_kind?: string;
  evaluation?: JobEvaluation;
}

/** `jobs` topic: a training step's progress (at most 4 a second per job). */
export interface JobProgressEvent {
  kind: 'job.progress';
  job: number;
  job_kind: string;
  device?: string;
  total_steps?: number;
  progress?: number;
  eta_s?: number | null;
  step?: number;
  kernel?: number | null;
  loss?: number | null;
  lr?: number | null;
  grad_norm?: number | null;
  tokens_per_s?: number | null;
}

/** `jobs` topic: sent once right after subscribing, when the server has it. */
export interface JobsHistoryEvent {
  kind: 'jobs.history';
  jobs: Job[];
}

export type JobsEvent = JobStatusEvent | JobProgressEvent | JobsHistoryEvent | { kind: string };
