export type KernelStatus = 'active' | 'standby' | 'learning';

/** One kernel as the `kernels.history` event describes it (docs/dashboard.md). */
export interface KernelInfo {
  index: number;
  role: string;
  status: KernelStatus;
  /** The E8 Petrie-plane projection of the kernel's root, in [-1, 1]. */
  x: number;
  y: number;
  /** Fisher–Rao distance of the anchor from its initial E8 anchor. */
  anchor_drift: number | null;
  phi: number | null;
  last_trained_at: string | null;
  adapter_bytes: number | null;
  /** Length of the anchor's last geodesic step (from `kernel.trained`), when one was seen live. */
  last_anchor_step?: number | null;
  /** The adapter version served now, when a `kernel.trained` or `kernel.rolled_back` was seen live. */
  adapter_version?: string | null;
}

export interface KernelsHistory {
  kind: 'kernels.history';
  roles: string[];
  kernels: KernelInfo[];
}

export interface KernelStatusEvent {
  kind: 'kernel.status';
  time?: string;
  index: number;
  status: KernelStatus;
}

export interface KernelTrainedEvent {
  kind: 'kernel.trained';
  time?: string;
  index: number;
  status: KernelStatus;
  anchor_distance?: number | null;
  adapter_bytes?: number | null;
  adapter_version?: string;
  phi?: number | null;
}

/** An admin rolled the kernel back to its previous adapter version (docs/telemetry.md). */
export interface KernelRolledBackEvent {
  kind: 'kernel.rolled_back';
  time?: string;
  index: number;
  status: KernelStatus;
  anchor_drift?: number | null;
  adapter_bytes?: number | null;
  adapter_version?: string;
  previous_version?: string;
  radius?: number | null;
}

/** Federation moved the kernel's anchor: central's merge, or an edge following it. */
export interface KernelAnchorMovedEvent {
  kind: 'kernel.anchor_moved';
  time?: string;
  index: number;
  anchor_drift: number | null;
  anchor_version: number;
  reason: string;
}

export type KernelsPayload =
  | KernelsHistory
  | KernelStatusEvent
  | KernelTrainedEvent
  | KernelRolledBackEvent
  | KernelAnchorMovedEvent
  | { kind: string };

/** Held-out losses of a kernel version, before (what it replaced) and after (docs/training.md). */
export interface HeldoutFigures {
  own_before: number;
  own_after: number;
  general_before: number | null;
  general_after: number | null;
  /** Relative change of the general held-out loss (0.01: 1 % worse). */
  general_change: number | null;
  heldin_before?: number | null;
  heldin_after?: number | null;
  own_is_heldout?: boolean;
}

/** `GET /api/v1/kernels/{index}/versions/` item, newest first. */
export interface KernelVersion {
  version: string;
  published_at: string;
  /** The version served now. */
  current: boolean;
  /** Routing radius (Fisher–Rao, radians) calibrated when it was promoted. */
  radius: number | null;
  heldout: HeldoutFigures | null;
  calibration: Record<string, unknown> | null;
  job: number | null;
  has_meta: boolean;
}

/** `POST /api/v1/kernels/{index}/rollback/`. */
export interface RollbackResult {
  index: number;
  version: string;
  versions: KernelVersion[];
}

/** One colour per role, in the order of the history's `roles` (all ≥ 4.5:1 on the card colour). */
export const ROLE_PALETTE = [
  '#ff7b93',
  '#7cc0ff',
  '#c39bff',
  '#ffa657',
  '#56d4c2',
  '#9be07a',
  '#f2d26b',
  '#e8a0e0',
];

export const STATUS_SYMBOL: Record<KernelStatus, string> = { active: '●', standby: '○', learning: '◐' };

/** Applies one live event to the kernels, copying only what changes (the rest keep identity). */
export function applyKernelEvent(
  kernels: readonly KernelInfo[],
  payload: KernelsPayload,
): KernelInfo[] | null {
  if (
    payload.kind !== 'kernel.status' &&
    payload.kind !== 'kernel.trained' &&
    payload.kind !== 'kernel.rolled_back' &&
    payload.kind !== 'kernel.anchor_moved'
  )
    return null;
  const event = payload as
    KernelStatusEvent | KernelTrainedEvent | KernelRolledBackEvent | KernelAnchorMovedEvent;
  const position = kernels.findIndex((k) => k.index === event.index);
  const current = kernels[position];
  if (!current) return null;
  const next = kernels.slice();
  if (event.kind === 'kernel.trained') {
    next[position] = {
      ...current,
      status: event.status ?? current.status,
      adapter_bytes: event.adapter_bytes ?? current.adapter_bytes,
      phi: event.phi ?? current.phi,
      last_trained_at: event.time ?? current.last_trained_at,
      last_anchor_step: event.anchor_distance ?? current.last_anchor_step,
      adapter_version: event.adapter_version ?? current.adapter_version,
    };
  } else if (event.kind === 'kernel.rolled_back') {
    next[position] = {
      ...current,
      status: event.status ?? current.status,
      anchor_drift: event.anchor_drift ?? current.anchor_drift,
      adapter_bytes: event.adapter_bytes ?? current.adapter_bytes,
      adapter_version: event.adapter_version ?? current.adapter_version,
    };
  } else if (event.kind === 'kernel.anchor_moved') {
    next[position] = { ...current, anchor_drift: event.anchor_drift ?? current.anchor_drift };
  } else {
    next[position] = { ...current, status: event.status };
  }
  return next;
}
