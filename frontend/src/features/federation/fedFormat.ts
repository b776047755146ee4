// Wording shared by the federation panel's views. Every unknown value reads "—".
import { useEffect, useState } from 'react';
import { ago, duration, parseTime } from '../dashboard/format';
import type { EdgeBundle, FederationNode, SnapshotImport } from './types';

/** A count, or an em dash when the server did not say. */
export function count(value: number | null | undefined): string {
  return typeof value === 'number' && Number.isFinite(value) ? String(value) : '—';
}

/** `12 s ago` for a time the server sent, or an em dash when it sent none. */
export function when(iso: string | null | undefined, now: number): string {
  return parseTime(iso) === null ? '—' : ago(iso, now);
}

/** How far behind a node is: `1 min 15 s`, `up to date` at 0, an em dash when unknown. */
export function lag(seconds: number | null | undefined): string {
  if (seconds === 0) return 'up to date';
  return duration(seconds);
}

const plural = (n: number, one: string, many: string = `${one}s`) => `${n} ${n === 1 ? one : many}`;

/** `3 packets`, `1 packet`, or `— packets` when unknown. */
function counted(value: number | null | undefined, one: string, many: string = `${one}s`): string {
  return `${count(value)} ${value === 1 ? one : many}`;
}

/** The node's totals since it joined, for the row's tooltip and the details' header. */
export function totals(node: Pick<FederationNode, 'packets_in' | 'packets_rejected' | 'duplicates'>): string {
  return [
    `${counted(node.packets_in, 'packet')} in`,
    `${count(node.packets_rejected)} rejected`,
    counted(node.duplicates, 'duplicate'),
  ].join(' · ');
}

/** `Central · 3 nodes · 1 online`. */
export function centralSummary(nodes: readonly Pick<FederationNode, 'status'>[]): string {
  const online = nodes.filter((n) => n.status === 'online').length;
  return `Central · ${plural(nodes.length, 'node')} · ${online} online`;
}

/** `minimal (3 kernels)`, or what of it is known. */
export function sizeText(size: string | null, kernels: number | null): string {
  if (!size) return kernels === null ? '' : plural(kernels, 'kernel');
  return kernels === null ? size : `${size} (${plural(kernels, 'kernel')})`;
}

/** The clock, read every `everyMs` so that "12 s ago" moves on between the topic's messages. */
export function useNow(everyMs = 5000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const every = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(every);
  }, [everyMs]);
  return now;
}

/** Kernels listed before the rest are counted. */
const KERNELS_SHOWN = 8;

/** `0, 57`, `0, 1, … 7 … (+2)` past eight, or an em dash for none. */
export function kernelList(kernels: readonly number[] | null | undefined, shown = KERNELS_SHOWN): string {
  if (!kernels || kernels.length === 0) return '—';
  const head = kernels.slice(0, shown).join(', ');
  return kernels.length > shown ? `${head} … (+${kernels.length - shown})` : head;
}

/** A bundle's version, or an em dash before it is published (0: none). */
export function bundleVersion(version: number | null | undefined): string {
  return typeof version === 'number' && version > 0 ? String(version) : '—';
}

/** How long applying a bundle took: `412 ms`, `1.25 s`. */
export function millis(ms: number | null | undefined): string {
  if (typeof ms !== 'number' || !Number.isFinite(ms)) return '—';
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

/** A training loss to four decimals, or an em dash when none was said. */
export function loss(value: number | null | undefined): string {
  return typeof value === 'number' && Number.isFinite(value) ? value.toFixed(4) : '—';
}

/** What an edge says it runs, as central shows it: a refusal is a warning. */
export function edgeBundleState(edge: Pick<EdgeBundle, 'version' | 'status'>): {
  text: string;
  refused: boolean;
} {
  const status = (edge.status ?? '').trim();
  if (status.startsWith('refused')) return { text: status, refused: true };
  if (status) return { text: status, refused: false };
  return { text: edge.version ? 'applied' : 'not reported yet', refused: false };
}

/** `Snapshot 20261207T174500Z imported 3 h ago: 12 patterns, 3 jobs queued.` */
export function snapshotText(snapshot: SnapshotImport, now: number): string {
  const at = snapshot.imported_at ? ` ${when(snapshot.imported_at, now)}` : '';
  return `Snapshot ${snapshot.version} imported${at}: ${plural(snapshot.patterns, 'pattern')}, ${plural(
    snapshot.jobs,
    'job',
  )} queued.`;
}
