import type { Threshold } from '../dashboard/Sparkline';

/** One Φ/κ measurement of a training run (`training.reading` on the `consciousness` topic). */
export interface Reading {
  kind?: 'training.reading';
  time?: string;
  job: number | null;
  kernel: number | null;
  step: number;
  phi: number | null;
  kappa: number | null;
  regime: string;
  phase: string;
  n_tokens?: number;
  loss?: number | null;
}

export interface ConsciousnessHistory {
  kind: 'consciousness.history';
  readings: Reading[];
  thresholds?: { phi?: Threshold[]; kappa?: Threshold[] };
}

export type ConsciousnessPayload = Reading | ConsciousnessHistory | { kind: string };

/** The colour of each regime (docs/design.md §5): calm blue, healthy green, alarming red. */
export const REGIME_COLOURS: Record<string, string> = {
  linear: '#7cc0ff',
  geometric: '#5bd46a',
  breakdown: '#ff8a80',
};
export const UNKNOWN_COLOUR = '#a3b1bf';

export function regimeColour(regime: string | null | undefined): string {
  return (regime && REGIME_COLOURS[regime.toLowerCase()]) || UNKNOWN_COLOUR;
}
