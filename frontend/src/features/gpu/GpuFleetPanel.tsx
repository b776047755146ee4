import { memo, useMemo, useState } from 'react';
import { EmptyState, Panel } from '../dashboard/Panel';
import { Sparkline, type SparkPoint } from '../dashboard/Sparkline';
import { bytes, clockTime, fixed, parseTime } from '../dashboard/format';
import { useTelemetryTopic } from '../telemetry/useTelemetry';
import type { GpuDevice, GpuPayload, GpuSample } from './types';
import './gpu.css';

/** Samples kept per node: the last hour at most (the history is ≤ 360, live adds one a second). */
export const WINDOW_MS = 60 * 60 * 1000;
export const MAX_SAMPLES = 3600;

type Fleet = Record<string, GpuSample[]>;

/** Adds samples to their nodes, drops what is older than the window; untouched nodes keep identity. */
export function addSamples(fleet: Fleet, samples: readonly GpuSample[]): Fleet {
  const next: Fleet = { ...fleet };
  const touched = new Map<string, GpuSample[]>();
  for (const sample of samples) {
    let list = touched.get(sample.node);
    if (!list) touched.set(sample.node, (list = (fleet[sample.node] ?? []).slice()));
    list.push(sample);
  }
  for (const [node, list] of touched) {
    const newest = parseTime(list.at(-1)?.time) ?? 0;
    let start = Math.max(0, list.length - MAX_SAMPLES);
    while (start < list.length - 1 && newest - (parseTime(list[start]!.time) ?? newest) > WINDOW_MS)
      start += 1;
    next[node] = start > 0 ? list.slice(start) : list;
  }
  return next;
}

const percent = (used: number | null, total: number | null) =>
  used !== null && total ? (100 * used) / total : null;

/** A card per node and per GPU with live charts, and the host's CPU, memory and disk. */
export function GpuFleetPanel() {
  const [fleet, setFleet] = useState<Fleet | null>(null);

  useTelemetryTopic<GpuPayload>('gpu', ({ payload }) => {
    if (payload.kind === 'gpu.history' && 'samples' in payload) {
      setFleet(addSamples({}, payload.samples));
    } else if (payload.kind === 'gpu.sample') {
      setFleet((current) => addSamples(current ?? {}, [payload as GpuSample]));
    }
  });

  const nodes = fleet ? Object.keys(fleet).sort() : [];
  return (
    <Panel id="gpu" title="GPU fleet" className="gpu">
      {!fleet ? (
        <EmptyState>Loading the device samples…</EmptyState>
      ) : nodes.length === 0 ? (
        <EmptyState>No node has reported a device sample yet; the sampler reports once a second.</EmptyState>
      ) : (
        nodes.map((node) => <NodeCard key={node} samples={fleet[node]!} />)
      )}
    </Panel>
  );
}

const NodeCard = memo(function NodeCard({ samples }: { samples: GpuSample[] }) {
  const latest = samples.at(-1)!;
  const host = latest.host;
  const series = useMemo(() => {
    const at = (s: GpuSample, i: number) => parseTime(s.time) ?? i;
    return {
      cpu: samples.map((s, i): SparkPoint => ({ t: at(s, i), v: s.host.cpu_percent })),
      memory: samples.map((s, i): SparkPoint => ({
        t: at(s, i),
        v: percent(s.host.memory_used, s.host.memory_total),
      })),
      disk: samples.map((s, i): SparkPoint => ({
        t: at(s, i),
        v: percent(s.host.disk_used, s.host.disk_total),
      })),
    };
  }, [samples]);
  const load = host.load_avg?.map((v) => fixed(v, 2)).join(' · ') ?? '—';

  return (
    <article className="gpu-node" aria-label={`Node ${latest.node}`} data-testid="gpu-node">
      <header className="gpu-node__head">
        <h3>{latest.node}</h3>
        <span className="muted dash-small">
          {host.hostname && host.hostname !== latest.node ? `${host.hostname} · ` : ''}sampled{' '}
          {clockTime(latest.time)}
        </span>
      </header>

      {latest.gpu_status === 'ok' ? (
        latest.gpus.map((gpu) => (
          <GpuCard key={gpu.uuid || gpu.index} gpu={gpu} node={latest.node} samples={samples} />
        ))
      ) : latest.gpu_status === 'absent' ? (
        <p className="gpu-node__none" data-testid="no-gpu">
          No GPU on {latest.node}: {latest.gpu_message}
        </p>
      ) : (
        <p className="gpu-node__error" role="alert" data-testid="gpu-error">
          GPU error on {latest.node}: {latest.gpu_message}
        </p>
      )}

      <div className="gpu-host" data-testid="host-stats">
        <HostMetric
          label="CPU"
          value={`${fixed(host.cpu_percent, 0)} %`}
          detail={`${host.cpu_count ?? '—'} cores · load ${load}`}
          points={series.cpu}
          testId="host-cpu"
        />
        <HostMetric
          label="Memory"
          value={`${fixed(percent(host.memory_used, host.memory_total), 0)} %`}
          detail={`${bytes(host.memory_used)} of ${bytes(host.memory_total)}`}
          points={series.memory}
          testId="host-memory"
        />
        <HostMetric
          label="Disk"
          value={`${fixed(percent(host.disk_used, host.disk_total), 0)} %`}
          detail={`${bytes(host.disk_used)} of ${bytes(host.disk_total)} on ${host.disk_path || '—'}`}
          points={series.disk}
          testId="host-disk"
        />
      </div>
    </article>
  );
});

function HostMetric(props: {
  label: string;
  value: string;
  detail: string;
  points: SparkPoint[];
  testId: string;
}) {
  return (
    <div className="gpu-metric">
      <div className="gpu-metric__text">
        <span className="dash-label">{props.label}</span>
        <span className="dash-number" data-testid={props.testId}>
          {props.value}
        </span>
      </div>
      <span className="muted dash-small">{props.detail}</span>
      <Sparkline points={props.points} label={`${props.label} percent`} min={0} max={100} height={32} />
    </div>
  );
}

function GpuCard({ gpu, node, samples }: { gpu: GpuDevice; node: string; samples: GpuSample[] }) {
  const series = useMemo(() => {
    const mine = (s: GpuSample) =>
      s.gpus.find((g) => g.uuid === gpu.uuid) ?? s.gpus.find((g) => g.index === gpu.index);
    const at = (s: GpuSample, i: number) => parseTime(s.time) ?? i;
    return {
      util: samples.map((s, i): SparkPoint => ({ t: at(s, i), v: mine(s)?.utilization_gpu ?? null })),
      memory: samples.map((s, i): SparkPoint => {
        const g = mine(s);
        return { t: at(s, i), v: g ? percent(g.memory_used, g.memory_total) : null };
      }),
    };
  }, [samples, gpu.uuid, gpu.index]);

  return (
    <div className="gpu-card" data-testid="gpu-card" aria-label={`GPU ${gpu.index} on ${node}: ${gpu.name}`}>
      <h4>
        GPU {gpu.index} · {gpu.name}
      </h4>
      <div className="gpu-host">
        <div className="gpu-metric">
          <div className="gpu-metric__text">
            <span className="dash-label">Utilisation</span>
            <span className="dash-number">{fixed(gpu.utilization_gpu, 0)} %</span>
          </div>
          <Sparkline points={series.util} label="GPU utilisation percent" min={0} max={100} height={32} />
        </div>
        <div className="gpu-metric">
          <div className="gpu-metric__text">
            <span className="dash-label">Memory</span>
            <span className="dash-number">{fixed(percent(gpu.memory_used, gpu.memory_total), 0)} %</span>
          </div>
          <span className="muted dash-small">
            {bytes(gpu.memory_used)} of {bytes(gpu.memory_total)}
          </span>
          <Sparkline points={series.memory} label="GPU memory percent" min={0} max={100} height={32} />
        </div>
      </div>
      <dl className="dash-facts">
        <div>
          <dt>Temperature</dt>
          <dd>{fixed(gpu.temperature_c, 0)} °C</dd>
        </div>
        <div>
          <dt>Power</dt>
          <dd>
            {fixed(gpu.power_w, 0)} / {fixed(gpu.power_limit_w, 0)} W
          </dd>
        </div>
        <div>
          <dt>Clocks SM / mem</dt>
          <dd>
            {fixed(gpu.clock_sm_mhz, 0)} / {fixed(gpu.clock_mem_mhz, 0)} MHz
          </dd>
        </div>
      </dl>
      {gpu.processes.length > 0 && (
        <ul className="dash-list dash-small">
          {gpu.processes.map((p) => (
            <li key={p.pid}>
              {p.name} (pid {p.pid}) · {bytes(p.memory_used)}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
