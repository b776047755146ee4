import { regimeColour, UNKNOWN_COLOUR } from '../consciousness/types';

/** The live state the avatar follows (docs/dashboard.md, "Avatar"). */
export interface AvatarInput {
  /** The telemetry socket is open. */
  connected: boolean;
  /** Regime and Φ of the latest training reading; null before any. */
  regime: string | null;
  phi: number | null;
  /** Jobs running now. */
  runningJobs: number;
  /** Training throughput of the running jobs (tokens/s, summed), when they report it. */
  tokensPerS: number | null;
  /** The most recently finished job failed (until another job finishes). */
  lastJobFailed: boolean;
}

export type Expression = 'asleep' | 'worried' | 'strained' | 'content' | 'calm' | 'neutral';

export interface AvatarLook {
  /** Body colour: the regime's colour; grey when disconnected or before any reading. */
  colour: string;
  /** 0..1: opacity and reach of the halo (Φ itself). */
  glow: number;
  /** Body size factor, 0.9 at Φ = 0 to 1.1 at Φ = 1. */
  scale: number;
  /** Seconds per breath (and per orbit); null when the figure is still (disconnected). */
  periodS: number | null;
  expression: Expression;
  /** One sentence saying what the figure shows, for screen readers and the caption. */
  description: string;
}

export const IDLE_PERIOD_S = 6;
export const BUSY_PERIOD_S = 3;
export const FASTEST_PERIOD_S = 0.8;

/** Breath period from activity: slow when idle, faster while a job runs, faster still with throughput. */
export function breathPeriod(runningJobs: number, tokensPerS: number | null): number {
  if (runningJobs <= 0) return IDLE_PERIOD_S;
  if (tokensPerS === null || !(tokensPerS > 0)) return BUSY_PERIOD_S;
  const period = BUSY_PERIOD_S / (1 + Math.log10(1 + tokensPerS / 100));
  return Math.max(FASTEST_PERIOD_S, Math.min(BUSY_PERIOD_S, period));
}

/** Maps the live state to the figure's look. Pure, so the mapping is unit-tested and documented. */
export function avatarLook(input: AvatarInput): AvatarLook {
  if (!input.connected) {
    return {
      colour: UNKNOWN_COLOUR,
      glow: 0,
      scale: 0.9,
      periodS: null,
      expression: 'asleep',
      description: 'Asleep: the live connection is down, so nothing it shows is current.',
    };
  }
  const phi = input.phi === null || !Number.isFinite(input.phi) ? null : Math.max(0, Math.min(1, input.phi));
  const glow = phi ?? 0;
  const regime = input.regime ? input.regime.toLowerCase() : null;
  let expression: Expression;
  if (input.lastJobFailed) expression = 'worried';
  else if (regime === 'breakdown') expression = 'strained';
  else if (regime === 'geometric') expression = 'content';
  else if (regime === 'linear') expression = 'calm';
  else expression = 'neutral';

  const periodS = breathPeriod(input.runningJobs, input.tokensPerS);
  const activity =
    input.runningJobs > 0
      ? `${input.runningJobs} job${input.runningJobs === 1 ? '' : 's'} running${
          input.tokensPerS ? ` at ${Math.round(input.tokensPerS)} tokens/s` : ''
        }`
      : 'idle';
  const state = regime ? `${regime} regime, Φ ${phi === null ? '—' : phi.toFixed(2)}` : 'no Φ reading yet';
  const worry = input.lastJobFailed ? '; the last job failed' : '';
  return {
    colour: regime ? regimeColour(regime) : UNKNOWN_COLOUR,
    glow,
    scale: 0.9 + 0.2 * glow,
    periodS,
    expression,
    description: `${expression[0]!.toUpperCase()}${expression.slice(1)}: ${state}; ${activity}${worry}.`,
  };
}
