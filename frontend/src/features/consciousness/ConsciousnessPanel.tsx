import { useMemo, useState, type ReactNode } from 'react';
import { EmptyState, Panel } from '../dashboard/Panel';
import { Sparkline, type SparkPoint, type Threshold } from '../dashboard/Sparkline';
import { appendCapped, clockTime, fixed, parseTime } from '../dashboard/format';
import { useTelemetryTopic } from '../telemetry/useTelemetry';
import { regimeColour, type ConsciousnessPayload, type Reading } from './types';
import './consciousness.css';

/** Readings kept in memory: the server's last hour (≤ 360) plus what arrives live. */
export const MAX_READINGS = 720;

interface State {
  loaded: boolean;
  readings: Reading[];
  phiThresholds: Threshold[];
  kappaThresholds: Threshold[];
}

const INITIAL: State = { loaded: false, readings: [], phiThresholds: [], kappaThresholds: [] };

function points(
  readings: readonly Reading[],
  value: (r: Reading) => number | null | undefined,
): SparkPoint[] {
  return readings.map((r, i) => ({ t: parseTime(r.time) ?? i, v: value(r) ?? null }));
}

/** Φ, κ, regime and phase of the training runs, with their thresholds; loss and perplexity beside. */
export function ConsciousnessPanel() {
  const [state, setState] = useState<State>(INITIAL);

  useTelemetryTopic<ConsciousnessPayload>('consciousness', ({ payload }) => {
    if (payload.kind === 'consciousness.history' && 'readings' in payload) {
      setState({
        loaded: true,
        readings: payload.readings.slice(-MAX_READINGS),
        phiThresholds: payload.thresholds?.phi ?? [],
        kappaThresholds: payload.thresholds?.kappa ?? [],
      });
    } else if (payload.kind === 'training.reading') {
      const reading = payload as Reading;
      setState((s) => ({ ...s, loaded: true, readings: appendCapped(s.readings, reading, MAX_READINGS) }));
    }
  });

  const { readings, phiThresholds, kappaThresholds } = state;
  const series = useMemo(
    () => ({
      phi: points(readings, (r) => r.phi),
      kappa: points(readings, (r) => r.kappa),
      loss: points(readings, (r) => r.loss),
    }),
    [readings],
  );
  const latest = readings.at(-1);
  const loss = latest?.loss ?? null;
  const perplexity = typeof loss === 'number' ? Math.exp(loss) : null;

  return (
    <Panel
      id="consciousness"
      title="Consciousness"
      className="consciousness"
      aside={
        latest ? (
          <span className="muted dash-small" data-testid="reading-source">
            job {latest.job ?? '—'}
            {latest.kernel !== null && latest.kernel !== undefined ? ` · kernel ${latest.kernel}` : ''} · step{' '}
            {latest.step} · {clockTime(latest.time)}
          </span>
        ) : undefined
      }
    >
      {!state.loaded ? (
        <EmptyState>Loading Φ and κ history…</EmptyState>
      ) : !latest ? (
        <EmptyState>No training has reported Φ yet — Φ and κ appear here while a job trains.</EmptyState>
      ) : (
        <>
          <div className="consciousness__charts">
            <Metric label="Φ integration" value={fixed(latest.phi, 3)} testId="phi-value">
              <Sparkline
                points={series.phi}
                label="Φ over time"
                min={0}
                max={1}
                thresholds={phiThresholds}
                color={regimeColour(latest.regime)}
                height={72}
              />
            </Metric>
            <Metric label="κ effective dimension" value={fixed(latest.kappa, 1)} testId="kappa-value">
              <Sparkline points={series.kappa} label="κ over time" thresholds={kappaThresholds} height={72} />
            </Metric>
            <Metric label="Loss" value={fixed(loss, 3)} testId="loss-value">
              <Sparkline points={series.loss} label="Loss over time" color="var(--warn)" height={72} />
            </Metric>
          </div>
          <dl className="dash-facts consciousness__facts">
            <div>
              <dt>Regime</dt>
              <dd
                className="consciousness__regime"
                style={{ color: regimeColour(latest.regime) }}
                data-testid="regime-value"
              >
                {latest.regime || '—'}
              </dd>
            </div>
            <div>
              <dt>Phase</dt>
              <dd className="consciousness__phase" data-testid="phase-value">
                {latest.phase || '—'}
              </dd>
            </div>
            <div>
              <dt>Perplexity</dt>
              <dd data-testid="perplexity-value">
                {perplexity === null
                  ? '—'
                  : perplexity < 1e5
                    ? perplexity.toFixed(1)
                    : perplexity.toExponential(2)}
              </dd>
            </div>
            <div>
              <dt>Readings, last hour</dt>
              <dd>{readings.length}</dd>
            </div>
          </dl>
        </>
      )}
    </Panel>
  );
}

function Metric({
  label,
  value,
  testId,
  children,
}: {
  label: string;
  value: string;
  testId: string;
  children: ReactNode;
}) {
  return (
    <div className="consciousness__metric">
      <span className="dash-label">{label}</span>
      <span className="dash-number dash-number--big" data-testid={testId}>
        {value}
      </span>
      {children}
    </div>
  );
}
