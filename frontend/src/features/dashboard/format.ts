// Small formatting and parsing helpers shared by the dashboard's panels.

/** Milliseconds since the epoch from the server's ISO time (Python writes microseconds). */
export function parseTime(iso: string | null | undefined): number | null {
  if (!iso) return null;
  const ms = Date.parse(iso.replace(/(\.\d{3})\d+/, '$1'));
  return Number.isFinite(ms) ? ms : null;
}

/** A number with `digits` decimals, or an em dash when it was not measured. */
export function fixed(value: number | null | undefined, digits = 2): string {
  return typeof value === 'number' && Number.isFinite(value) ? value.toFixed(digits) : '—';
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** `1.5 GiB` from a byte count. */
export function bytes(value: number | null | undefined): string {
  if (typeof value !== 'number' || !Number.isFinite(value)) return '—';
  let n = value;
  let unit = 0;
  while (Math.abs(n) >= 1024 && unit < UNITS.length - 1) {
    n /= 1024;
    unit += 1;
  }
  return `${unit === 0 ? n.toFixed(0) : n.toFixed(1)} ${UNITS[unit]}`;
}

/** `12 s ago`, `4 min ago`, `3 h ago` relative to `now` (ms). */
export function ago(iso: string | null | undefined, now: number = Date.now()): string {
  const then = parseTime(iso);
  if (then === null) return 'never';
  const s = Math.max(0, Math.round((now - then) / 1000));
  if (s < 90) return `${s} s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

const clock = new Intl.DateTimeFormat('en-GB', {
  hour: '2-digit',
  minute: '2-digit',
  second: '2-digit',
  hour12: false,
});

/** `14:03:07` in the browser's time zone. */
export function clockTime(iso: string | null | undefined): string {
  const t = parseTime(iso);
  return t === null ? '—' : clock.format(new Date(t));
}

/** `1 h 05 min`, `3 min 20 s`, `45 s` for an ETA in seconds. */
export function duration(seconds: number | null | undefined): string {
  if (typeof seconds !== 'number' || !Number.isFinite(seconds)) return '—';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')} min`;
}

/** Keeps the newest `limit` items of `items` plus `added` (appended at the end). */
export function appendCapped<T>(items: readonly T[], added: T, limit: number): T[] {
  const next = items.length >= limit ? items.slice(items.length - limit + 1) : items.slice();
  next.push(added);
  return next;
}
