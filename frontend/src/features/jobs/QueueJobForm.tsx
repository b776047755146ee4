import { useState, type FormEvent } from 'react';
import { ApiError } from '../../api/client';
import { useUploads } from '../uploads/useUploads';
import { FormField } from './FormField';
import { PriorityInput } from './PriorityInput';
import { queueJob } from './jobsApi';
import { JOB_KINDS, type Job } from './types';

/**
 * Hyperparameters the form offers, with the server's defaults (`HYPERPARAMETERS` and `CHOICES`
 * in learning/services.py); the server checks every value and fills the ones not sent.
 */
const NUMBERS = [
  { name: 'steps', label: 'Steps', default: '500', kinds: JOB_KINDS },
  { name: 'batch_size', label: 'Batch size', default: '8', kinds: ['pretrain', 'adapter'] },
  { name: 'seq_len', label: 'Sequence length', default: '128', kinds: ['pretrain', 'adapter'] },
  { name: 'learning_rate', label: 'Learning rate', default: '0.0003', kinds: ['pretrain', 'adapter'] },
  { name: 'lora_rank', label: 'LoRA rank', default: '8', kinds: ['adapter'] },
  { name: 'vocab_size', label: 'Vocabulary size', default: '8000', kinds: ['coordizer'] },
] as const;
const PRESETS = ['tiny', '100m'];

type Errors = Record<string, string>;

function firstProblem(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    for (const item of value) {
      const found = firstProblem(item);
      if (found) return found;
    }
  }
  if (value && typeof value === 'object') {
    for (const [key, item] of Object.entries(value)) {
      const found = firstProblem(item);
      if (found) return /^\d+$/.test(key) ? `item ${Number(key) + 1}: ${found}` : found;
    }
  }
  return null;
}

/** The server's 400 answer, field by field: DRF field errors, and the service's `detail` mapped
 * to the field it names (e.g. "hyperparameter steps=0 is outside …" → steps). */
export function errorsByField(body: unknown, fallback: string): Errors {
  const errors: Errors = {};
  if (!body || typeof body !== 'object') return { form: fallback };
  for (const [field, value] of Object.entries(body)) {
    const problem = firstProblem(value);
    if (!problem) continue;
    if (field !== 'detail') {
      errors[field === 'non_field_errors' ? 'form' : field] = problem;
      continue;
    }
    const named = /hyperparameter (\w+)/.exec(problem)?.[1] ?? /^(preset|optimizer) must/.exec(problem)?.[1];
    if (named) errors[named] = problem;
    else if (/target.kernel/.test(problem)) errors.target_kernels = problem;
    else if (/dataset/.test(problem)) errors.datasets = problem;
    else errors.form = problem;
  }
  return Object.keys(errors).length ? errors : { form: fallback };
}

interface Props {
  onQueued: (job: Job) => void;
}

/** Staff form: queue a coordizer, pretrain or adapter job. */
export function QueueJobForm({ onQueued }: Props) {
  const [kind, setKind] = useState<string>('adapter');
  const [priority, setPriority] = useState('0');
  const [kernels, setKernels] = useState('');
  const [datasets, setDatasets] = useState<string[]>([]);
  const [numbers, setNumbers] = useState<Record<string, string>>(() =>
    Object.fromEntries(NUMBERS.map((field) => [field.name, field.default])),
  );
  const [preset, setPreset] = useState<string>(PRESETS[0] ?? 'tiny');
  const [errors, setErrors] = useState<Errors>({});
  const [busy, setBusy] = useState(false);
  // Live: an upload stored meanwhile (an `upload.status` event) becomes a choice at once.
  const { newestFirst, loaded } = useUploads();
  const uploads = loaded ? newestFirst : null;
  const [queued, setQueued] = useState<Job | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const local: Errors = {};
    const targets = kernels
      .split(/[\s,]+/)
      .filter(Boolean)
      .map((part) => Number(part));
    if (targets.some((k) => !Number.isInteger(k) || k < 0 || k > 239)) {
      local.target_kernels = 'Kernel indices are whole numbers from 0 to 239, separated by commas.';
    }
    const hyperparameters: Record<string, number | string> = {};
    for (const field of NUMBERS) {
      if (!(field.kinds as readonly string[]).includes(kind)) continue;
      const raw = numbers[field.name]?.trim() ?? '';
      if (raw === '') continue; // the server's default
      const value = Number(raw);
      if (!Number.isFinite(value)) local[field.name] = `${field.label} must be a number.`;
      else hyperparameters[field.name] = value;
    }
    if (kind === 'pretrain') hyperparameters.preset = preset;
    if (Object.keys(local).length) {
      setErrors(local);
      return;
    }
    setBusy(true);
    setErrors({});
    setQueued(null);
    try {
      const job = await queueJob({
        kind,
        priority: Number(priority || 0),
        datasets: datasets.map(Number),
        target_kernels: targets,
        hyperparameters,
      });
      setQueued(job);
      onQueued(job);
    } catch (failure) {
      const body = failure instanceof ApiError ? failure.body : null;
      setErrors(errorsByField(body, (failure as Error).message));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form className="queue-form" noValidate onSubmit={(event) => void submit(event)} aria-label="Queue a job">
      <h3>Queue a job</h3>
      <div className="queue-form__grid">
        <FormField label="Kind" error={errors.kind}>
          {(control) => (
            <select
              {...control}
              className="field__input"
              value={kind}
              onChange={(event) => setKind(event.target.value)}
            >
              <option value="adapter">adapter (the kernels' LoRA)</option>
              <option value="pretrain">pretrain (the trunk)</option>
              <option value="coordizer">coordizer (tokenizer + basin coordinates)</option>
            </select>
          )}
        </FormField>
        <FormField label="Job priority" help="−100…100, higher runs first." error={errors.priority}>
          {(control) => <PriorityInput {...control} value={priority} onValue={setPriority} />}
        </FormField>
        <FormField
          label="Datasets (uploads)"
          help={
            uploads === null
              ? 'Loading uploads…'
              : uploads.length === 0
                ? 'No uploads yet: coordizer and pretrain jobs then use the bootstrap corpus.'
                : 'With none chosen, coordizer and pretrain jobs use the bootstrap corpus.'
          }
          error={errors.datasets}
        >
          {(control) => (
            <select
              {...control}
              className="field__input"
              multiple
              size={4}
              value={datasets}
              onChange={(event) =>
                setDatasets([...event.target.selectedOptions].map((option) => option.value))
              }
            >
              {(uploads ?? []).map((upload) => (
                <option key={upload.id} value={String(upload.id)}>
                  #{upload.id} {upload.original_name} ({upload.status})
                </option>
              ))}
            </select>
          )}
        </FormField>
        <FormField
          label="Target kernels"
          help={
            kind === 'adapter'
              ? 'Indices 0–239; empty: the kernels its datasets were routed to.'
              : `A ${kind} job trains no kernel adapters.`
          }
          error={errors.target_kernels}
        >
          {(control) => (
            <input
              {...control}
              className="field__input"
              value={kernels}
              placeholder="e.g. 3, 17, 42"
              onChange={(event) => setKernels(event.target.value)}
              disabled={kind !== 'adapter'}
            />
          )}
        </FormField>
        {NUMBERS.filter((field) => (field.kinds as readonly string[]).includes(kind)).map((field) => (
          <FormField
            key={field.name}
            label={field.label}
            help={`default ${field.default}`}
            error={errors[field.name]}
          >
            {(control) => (
              <input
                {...control}
                className="field__input"
                inputMode="decimal"
                value={numbers[field.name]}
                onChange={(event) => setNumbers((all) => ({ ...all, [field.name]: event.target.value }))}
              />
            )}
          </FormField>
        ))}
        {kind === 'pretrain' && (
          <FormField label="Trunk preset" error={errors.preset}>
            {(control) => (
              <select
                {...control}
                className="field__input"
                value={preset}
                onChange={(event) => setPreset(event.target.value)}
              >
                {PRESETS.map((name) => (
                  <option key={name}>{name}</option>
                ))}
              </select>
            )}
          </FormField>
        )}
      </div>
      {errors.form && (
        <p className="queue-form__error" role="alert">
          {errors.form}
        </p>
      )}
      <div className="queue-form__actions">
        <button type="submit" className="button button--primary" disabled={busy}>
          {busy ? 'Queueing…' : 'Queue job'}
        </button>
        {queued && <span role="status">Queued job #{queued.id}.</span>}
      </div>
    </form>
  );
}
