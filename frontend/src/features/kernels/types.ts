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
  phi?: number | null;
}

export type KernelsPayload = KernelsHistory | KernelStatusEvent | KernelTrainedEvent | { kind: string };

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
  if (payload.kind !== 'kernel.status' && payload.kind !== 'kernel.trained') return null;
  const event = payload as KernelStatusEvent | KernelTrainedEvent;
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
    };
  } else {
    next[position] = { ...current, status: event.status };
  }
  return next;
}
