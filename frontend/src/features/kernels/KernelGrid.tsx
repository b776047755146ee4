import { memo, useCallback, useMemo, useRef, useState, type KeyboardEvent, type PointerEvent } from 'react';
import { EmptyState, Panel } from '../dashboard/Panel';
import { ago, bytes, fixed } from '../dashboard/format';
import { useTelemetryTopic } from '../telemetry/useTelemetry';
import { KernelVersions } from './KernelVersions';
import {
  applyKernelEvent,
  ROLE_PALETTE,
  STATUS_SYMBOL,
  type KernelInfo,
  type KernelStatus,
  type KernelsPayload,
} from './types';
import './kernels.css';

const ALL = '';
const STATUSES: KernelStatus[] = ['active', 'learning', 'standby'];

/** Radius of a cell in plane units: a little under half the nearest pair's distance. */
export function cellRadius(kernels: readonly KernelInfo[]): number {
  let nearest = Infinity;
  for (let i = 0; i < kernels.length; i += 1) {
    const a = kernels[i]!;
    for (let j = i + 1; j < kernels.length; j += 1) {
      const b = kernels[j]!;
      const d = Math.hypot(a.x - b.x, a.y - b.y);
      if (d > 1e-6 && d < nearest) nearest = d;
    }
  }
  return Math.min(0.05, Math.max(0.012, Number.isFinite(nearest) ? nearest * 0.42 : 0.03));
}

interface CellProps {
  kernel: KernelInfo;
  r: number;
  colour: string;
  selected: boolean;
  dimmed: boolean;
  focusable: boolean;
}

/** One kernel: ● active, ○ standby, ◐ learning, in its role's colour. Re-renders only when it changes. */
const KernelCell = memo(function KernelCell({ kernel, r, colour, selected, dimmed, focusable }: CellProps) {
  const cx = kernel.x;
  const cy = -kernel.y; // the plane's y points up, the SVG's down
  return (
    <g
      className={`kcell kcell--${kernel.status}${dimmed ? ' kcell--dimmed' : ''}${selected ? ' kcell--selected' : ''}`}
      data-testid="kernel-cell"
      data-index={kernel.index}
      data-status={kernel.status}
      data-role={kernel.role}
      role="button"
      tabIndex={dimmed ? undefined : focusable ? 0 : -1}
      aria-pressed={selected}
      aria-label={`Kernel ${kernel.index}, ${kernel.role}, ${kernel.status}`}
      style={{ color: colour }}
    >
      <circle className="kcell__ring" cx={cx} cy={cy} r={r} />
      {kernel.status === 'learning' && (
        <path className="kcell__half" d={`M${cx} ${cy - r}A${r} ${r} 0 0 0 ${cx} ${cy + r}Z`} />
      )}
      {selected && <circle className="kcell__focus" cx={cx} cy={cy} r={r * 1.7} />}
    </g>
  );
});

/** The 240 kernels at their E8 roots (Petrie projection), with role filter and details. */
export function KernelGrid() {
  const [roles, setRoles] = useState<string[]>([]);
  const [kernels, setKernels] = useState<KernelInfo[] | null>(null);
  const [r, setRadius] = useState(0.03);
  const [role, setRole] = useState<string>(ALL);
  const [selected, setSelected] = useState<number | null>(null);
  const [hovered, setHovered] = useState<number | null>(null);
  const [focusIndex, setFocusIndex] = useState<number | null>(null);
  const svgRef = useRef<SVGSVGElement>(null);

  useTelemetryTopic<KernelsPayload>('kernels', ({ payload }) => {
    if (payload.kind === 'kernels.history' && 'kernels' in payload) {
      setRoles(payload.roles ?? [...new Set(payload.kernels.map((k) => k.role))]);
      setKernels(payload.kernels);
      setRadius(cellRadius(payload.kernels)); // positions never move; live events change states only
      return;
    }
    setKernels((current) => (current ? (applyKernelEvent(current, payload) ?? current) : current));
  });

  const colours = useMemo(
    () => new Map(roles.map((name, i) => [name, ROLE_PALETTE[i % ROLE_PALETTE.length]!])),
    [roles],
  );
  const visible = useMemo(
    () => (kernels ?? []).filter((k) => role === ALL || k.role === role).map((k) => k.index),
    [kernels, role],
  );
  const counts = useMemo(() => {
    const c: Record<KernelStatus, number> = { active: 0, standby: 0, learning: 0 };
    for (const k of kernels ?? []) if (role === ALL || k.role === role) c[k.status] += 1;
    return c;
  }, [kernels, role]);

  const byIndex = useMemo(() => new Map((kernels ?? []).map((k) => [k.index, k])), [kernels]);
  const rovingIndex = focusIndex !== null && visible.includes(focusIndex) ? focusIndex : (visible[0] ?? null);
  const shown = byIndex.get(hovered ?? selected ?? -1) ?? null;

  const indexOf = (target: EventTarget): number | null => {
    const cell = (target as Element).closest?.('[data-index]');
    return cell ? Number(cell.getAttribute('data-index')) : null;
  };
  const focusCell = useCallback((index: number) => {
    setFocusIndex(index);
    svgRef.current?.querySelector<SVGGElement>(`[data-index="${index}"]`)?.focus();
  }, []);

  const onKeyDown = (event: KeyboardEvent<SVGSVGElement>) => {
    const index = indexOf(event.target);
    if (index === null) return;
    setHovered(null); // the keyboard leads now: show what it selects
    const at = visible.indexOf(index);
    const moves: Record<string, number> = {
      ArrowRight: at + 1,
      ArrowDown: at + 1,
      ArrowLeft: at - 1,
      ArrowUp: at - 1,
      Home: 0,
      End: visible.length - 1,
    };
    if (event.key in moves) {
      event.preventDefault();
      const next = visible[Math.max(0, Math.min(visible.length - 1, moves[event.key]!))];
      if (next !== undefined) focusCell(next);
    } else if (event.key === 'Enter' || event.key === ' ') {
      event.preventDefault();
      setSelected((s) => (s === index ? null : index));
    } else if (event.key === 'Escape') {
      setSelected(null);
    }
  };

  return (
    <Panel
      id="kernels"
      title="Kernels"
      className="kernels"
      aside={
        kernels ? (
          <span className="kernels__counts" data-testid="kernel-counts">
            {STATUSES.map((status) => (
              <span key={status} data-testid={`count-${status}`}>
                {STATUS_SYMBOL[status]} {counts[status]} {status}
              </span>
            ))}
          </span>
        ) : undefined
      }
    >
      {!kernels ? (
        <EmptyState>Loading the 240 kernels…</EmptyState>
      ) : (
        <>
          <div className="kernels__filter" role="group" aria-label="Filter kernels by role">
            {[ALL, ...roles].map((name) => (
              <button
                key={name || 'all'}
                type="button"
                className="kernels__chip"
                aria-pressed={role === name}
                onClick={() => setRole(name)}
                style={name ? { ['--chip' as string]: colours.get(name) } : undefined}
              >
                {name ? <span className="kernels__swatch" aria-hidden="true" /> : null}
                {name || 'All roles'}
              </button>
            ))}
          </div>
          <div className="kernels__body">
            <svg
              ref={svgRef}
              className="kernels__plane"
              viewBox="-1.08 -1.08 2.16 2.16"
              role="group"
              aria-label={`Kernel grid: ${visible.length} kernels${role ? ` with role ${role}` : ''}, at their E8 roots (Petrie projection). Arrow keys move, Enter selects.`}
              onKeyDown={onKeyDown}
              onPointerOver={(e: PointerEvent<SVGSVGElement>) => setHovered(indexOf(e.target))}
              onPointerLeave={() => setHovered(null)}
              onClick={(e) => {
                const index = indexOf(e.target);
                if (index !== null) setSelected((s) => (s === index ? null : index));
              }}
              onFocus={(e) => {
                const index = indexOf(e.target);
                if (index !== null) setFocusIndex(index);
              }}
            >
              {kernels.map((k) => (
                <KernelCell
                  key={k.index}
                  kernel={k}
                  r={r}
                  colour={colours.get(k.role) ?? 'var(--muted)'}
                  selected={selected === k.index}
                  dimmed={role !== ALL && k.role !== role}
                  focusable={rovingIndex === k.index}
                />
              ))}
            </svg>
            <KernelDetails
              kernel={shown}
              colour={shown ? colours.get(shown.role) : undefined}
              selected={shown !== null && shown.index === selected}
            />
          </div>
        </>
      )}
    </Panel>
  );
}

interface DetailsProps {
  kernel: KernelInfo | null;
  colour?: string;
  /** The kernel shown is the selected one (not only pointed at): its version history is read. */
  selected: boolean;
}

function KernelDetails({ kernel, colour, selected }: DetailsProps) {
  if (!kernel) {
    return (
      <p className="kernels__details muted dash-small" data-testid="kernel-details">
        Point at a kernel, or select one (click, or Tab to the grid, arrows and Enter), to see its role,
        anchor drift, Φ, last training and adapter size; a selected trained kernel shows its versions. ●
        active (trained adapter) · ○ standby (anchor only) · ◐ learning (a job is training it).
      </p>
    );
  }
  return (
    <div className="kernels__details" data-testid="kernel-details" aria-live="polite">
      <h3>
        Kernel {kernel.index}{' '}
        <span style={{ color: colour }}>
          {STATUS_SYMBOL[kernel.status]} {kernel.status}
        </span>
      </h3>
      <dl className="dash-facts">
        <div>
          <dt>Role</dt>
          <dd style={{ color: colour }}>{kernel.role}</dd>
        </div>
        <div>
          <dt>Anchor drift</dt>
          <dd>{fixed(kernel.anchor_drift, 4)}</dd>
        </div>
        <div>
          <dt>Φ</dt>
          <dd>{fixed(kernel.phi, 3)}</dd>
        </div>
        <div>
          <dt>Last trained</dt>
          <dd>{ago(kernel.last_trained_at)}</dd>
        </div>
        <div>
          <dt>Adapter</dt>
          <dd>{kernel.adapter_bytes ? bytes(kernel.adapter_bytes) : 'none'}</dd>
        </div>
        {kernel.last_anchor_step !== undefined && kernel.last_anchor_step !== null && (
          <div>
            <dt>Last anchor step</dt>
            <dd>{fixed(kernel.last_anchor_step, 4)}</dd>
          </div>
        )}
      </dl>
      {selected && (kernel.adapter_bytes ?? 0) > 0 && (
        <KernelVersions
          key={kernel.index}
          index={kernel.index}
          revision={`${kernel.adapter_version ?? ''}|${kernel.last_trained_at ?? ''}`}
        />
      )}
    </div>
  );
}
