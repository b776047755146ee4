import { memo, useMemo } from 'react';
import './dashboard.css';

export interface SparkPoint {
  /** Time of the value (ms since the epoch): the x axis is time, so gaps show as gaps in time. */
  t: number;
  /** The measured value; null where nothing was measured (the line breaks there). */
  v: number | null;
}

export interface Threshold {
  name: string;
  value: number;
}

interface Props {
  points: readonly SparkPoint[];
  /** What the chart shows, for screen readers (the latest value is added to it). */
  label: string;
  /** Fixed y domain; by default the data's range, widened to the nearest threshold each side. */
  min?: number;
  max?: number;
  thresholds?: readonly Threshold[];
  height?: number;
  /** A CSS colour for the line (default: the accent colour). */
  color?: string;
}

const WIDTH = 300;

/**
 * The y domain: the given bounds, else the data's range widened to the nearest threshold on each
 * side (so the band the data sits in is always visible; farther thresholds stay off the chart).
 */
export function sparkDomain(
  values: readonly number[],
  thresholds: readonly Threshold[] = [],
  min?: number,
  max?: number,
): [number, number] {
  let lo = min ?? (values.length ? Math.min(...values) : 0);
  let hi = max ?? (values.length ? Math.max(...values) : 1);
  if (min === undefined) {
    const below = thresholds.filter((t) => t.value <= lo).map((t) => t.value);
    if (below.length) lo = Math.max(...below);
  }
  if (max === undefined) {
    const above = thresholds.filter((t) => t.value >= hi).map((t) => t.value);
    if (above.length) hi = Math.min(...above);
  }
  if (hi - lo < 1e-9) {
    const pad = Math.abs(hi) * 0.05 || 0.5;
    return [lo - pad, hi + pad];
  }
  const pad = (hi - lo) * 0.06;
  return [min ?? lo - pad, max ?? hi + pad];
}

/** The SVG path of the points in a WIDTH × height box; null values break the line. */
export function sparkPath(points: readonly SparkPoint[], domain: [number, number], height: number): string {
  if (points.length === 0) return '';
  const t0 = points[0]!.t;
  const span = points[points.length - 1]!.t - t0 || 1;
  const [lo, hi] = domain;
  let path = '';
  let pen = false;
  for (const { t, v } of points) {
    if (v === null || !Number.isFinite(v)) {
      pen = false;
      continue;
    }
    const x = points.length === 1 ? WIDTH : ((t - t0) / span) * WIDTH;
    const y = height - ((v - lo) / (hi - lo)) * height;
    path += `${pen ? 'L' : 'M'}${x.toFixed(1)} ${y.toFixed(1)}`;
    pen = true;
  }
  return path;
}

/** A hand-drawn line chart: one SVG path, threshold lines, and their names beside them. */
export const Sparkline = memo(function Sparkline({
  points,
  label,
  min,
  max,
  thresholds = [],
  height = 48,
  color = 'var(--accent)',
}: Props) {
  const { path, domain, latest } = useMemo(() => {
    const values = points.map((p) => p.v).filter((v): v is number => v !== null && Number.isFinite(v));
    const d = sparkDomain(values, thresholds, min, max);
    return { path: sparkPath(points, d, height), domain: d, latest: values.at(-1) };
  }, [points, thresholds, min, max, height]);
  const [lo, hi] = domain;
  const visible = thresholds.filter((t) => t.value >= lo && t.value <= hi);
  // Labels of thresholds close together alternate sides so they do not overlap.
  const sides = new Map<string, 'left' | 'right'>();
  const sorted = visible.slice().sort((a, b) => a.value - b.value);
  sorted.forEach((t, i) => {
    const previous = sorted[i - 1];
    const near = previous && (t.value - previous.value) / (hi - lo) < 0.25;
    sides.set(t.name, near && sides.get(previous.name) === 'right' ? 'left' : 'right');
  });
  const summary =
    latest === undefined ? `${label}: no data yet` : `${label}: ${points.length} points, latest ${latest}`;

  return (
    <div className="spark" style={{ height }}>
      <svg
        className="spark__svg"
        viewBox={`0 0 ${WIDTH} ${height}`}
        preserveAspectRatio="none"
        role="img"
        aria-label={summary}
      >
        {visible.map((t) => {
          const y = height - ((t.value - lo) / (hi - lo)) * height;
          return <line key={t.name} className="spark__threshold" x1={0} x2={WIDTH} y1={y} y2={y} />;
        })}
        <path className="spark__line" d={path} style={{ stroke: color }} />
      </svg>
      {visible.map((t) => (
        <span
          key={t.name}
          className={`spark__label spark__label--${sides.get(t.name) ?? 'right'}`}
          style={{ top: `${(1 - (t.value - lo) / (hi - lo)) * 100}%` }}
          aria-hidden="true"
        >
          {t.name} {t.value}
        </span>
      ))}
    </div>
  );
});
