import { useState, type FormEvent } from 'react';
import { ApiError } from '../../api/client';
import { FormField } from '../jobs/FormField';
import { startRound } from './federationApi';
import type { FlowerRound } from './types';

/** The server's limits (federation/flower/rounds.py). */
export const MAX_ROUND_KERNELS = 12;
export const MAX_ROUNDS = 50;
export const MAX_EDGES = 1000;

/** `3, 17 42` → [3, 17, 42], or what is wrong with it. */
export function parseKernels(text: string): number[] | string {
  const parts = text.split(/[\s,]+/).filter(Boolean);
  if (parts.length === 0) return 'Name at least one kernel (0–239).';
  const kernels: number[] = [];
  for (const part of parts) {
    if (!/^\d+$/.test(part) || Number(part) > 239) return `“${part}” is not a kernel: kernels are 0–239.`;
    const kernel = Number(part);
    if (kernels.includes(kernel)) return `Kernel ${kernel} is named twice.`;
    kernels.push(kernel);
  }
  if (kernels.length > MAX_ROUND_KERNELS) return `At most ${MAX_ROUND_KERNELS} kernels a round.`;
  return kernels;
}

/** A whole number in [min, max], or null. */
function whole(text: string, min: number, max: number): number | null {
  if (!/^\d+$/.test(text.trim())) return null;
  const n = Number(text);
  return n >= min && n <= max ? n : null;
}

/** The server's word on one field (400 `{"kernels": [...]}`), when it gave one. */
function fieldProblem(failure: unknown, field: string): string | null {
  if (!(failure instanceof ApiError) || failure.status !== 400) return null;
  const said = (failure.body as Record<string, unknown> | null)?.[field];
  const first = Array.isArray(said) ? said[0] : said;
  return typeof first === 'string' ? first : null;
}

/** Staff only: start a round of federated adapter averaging (kernels, minimum edges, rounds). */
export function RoundForm({ onStarted }: { onStarted: (round: FlowerRound) => void }) {
  const [kernels, setKernels] = useState('');
  const [minEdges, setMinEdges] = useState('1');
  const [rounds, setRounds] = useState('1');
  const [pending, setPending] = useState(false);
  const [problems, setProblems] = useState<Record<string, string>>({});
  const [error, setError] = useState<string | null>(null);
  const [started, setStarted] = useState<string | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const chosen = parseKernels(kernels);
    const edges = whole(minEdges, 1, MAX_EDGES);
    const count = whole(rounds, 1, MAX_ROUNDS);
    const found: Record<string, string> = {};
    if (typeof chosen === 'string') found.kernels = chosen;
    if (edges === null) found.min_edges = `A whole number from 1 to ${MAX_EDGES}.`;
    if (count === null) found.rounds = `A whole number from 1 to ${MAX_ROUNDS}.`;
    setProblems(found);
    setError(null);
    setStarted(null);
    if (typeof chosen === 'string' || edges === null || count === null) return;
    setPending(true);
    try {
      const round = await startRound(chosen, edges, count);
      onStarted(round);
      setStarted(`Round ${round.id} started: kernels ${round.kernels.join(', ')}.`);
    } catch (failure) {
      const said: Record<string, string> = {};
      for (const field of ['kernels', 'min_edges', 'rounds']) {
        const problem = fieldProblem(failure, field);
        if (problem) said[field] = problem;
      }
      if (Object.keys(said).length > 0) setProblems(said);
      else setError(`Could not start the round: ${(failure as Error).message}`);
    } finally {
      setPending(false);
    }
  }

  return (
    <form
      className="fed-add fed-round-form"
      aria-label="Start a Flower round"
      onSubmit={(event) => void submit(event)}
      noValidate
    >
      <FormField label="Kernels" help="e.g. 3, 17" error={problems.kernels}>
        {(control) => (
          <input
            {...control}
            className="field__input"
            name="kernels"
            autoComplete="off"
            spellCheck={false}
            inputMode="numeric"
            value={kernels}
            onChange={(event) => setKernels(event.target.value)}
          />
        )}
      </FormField>
      <FormField label="Minimum edges" error={problems.min_edges}>
        {(control) => (
          <input
            {...control}
            className="field__input"
            name="min_edges"
            type="number"
            min={1}
            max={MAX_EDGES}
            value={minEdges}
            onChange={(event) => setMinEdges(event.target.value)}
          />
        )}
      </FormField>
      <FormField label="Rounds" error={problems.rounds}>
        {(control) => (
          <input
            {...control}
            className="field__input"
            name="rounds"
            type="number"
            min={1}
            max={MAX_ROUNDS}
            value={rounds}
            onChange={(event) => setRounds(event.target.value)}
          />
        )}
      </FormField>
      <button type="submit" className="button button--primary fed-add__submit" disabled={pending}>
        Start round
      </button>
      {started && (
        <p className="dash-small fed-done" role="status">
          {started}
        </p>
      )}
      {error && (
        <p className="fed__error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
