import { useState, type FormEvent } from 'react';
import { ApiError } from '../../api/client';
import { FormField } from '../jobs/FormField';
import { addNode } from './federationApi';
import { NODE_SIZES, type CreatedNode, type NodeSize } from './types';

const SIZE_WORDS: Record<NodeSize, string> = {
  minimal: 'minimal (3 kernels)',
  medium: 'medium (12 kernels)',
  full: 'full (240 kernels)',
};

/** The server's word on the name (400 `{"name": [...]}`), without the field's prefix. */
function nameProblem(failure: unknown): string | null {
  if (!(failure instanceof ApiError) || failure.status !== 400) return null;
  const said = (failure.body as { name?: unknown } | null)?.name;
  const first = Array.isArray(said) ? said[0] : said;
  return typeof first === 'string' ? first : null;
}

/** Staff only: register an edge by name and size; the server answers with its join token. */
export function AddNodeForm({ onAdded }: { onAdded: (node: CreatedNode) => void }) {
  const [name, setName] = useState('');
  const [size, setSize] = useState<NodeSize>('minimal');
  const [pending, setPending] = useState(false);
  const [nameError, setNameError] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    const trimmed = name.trim();
    if (!trimmed) {
      setNameError('Give the node a name.');
      return;
    }
    setPending(true);
    setNameError(null);
    setError(null);
    try {
      const created = await addNode(trimmed, size);
      setName('');
      onAdded(created);
    } catch (failure) {
      const problem = nameProblem(failure);
      if (problem) setNameError(problem);
      else setError(`Could not add the node: ${(failure as Error).message}`);
    } finally {
      setPending(false);
    }
  }

  return (
    <form
      className="fed-add"
      aria-label="Add an edge node"
      onSubmit={(event) => void submit(event)}
      noValidate
    >
      <FormField label="Node name" error={nameError}>
        {(control) => (
          <input
            {...control}
            className="field__input"
            name="name"
            autoComplete="off"
            spellCheck={false}
            maxLength={100}
            value={name}
            onChange={(event) => setName(event.target.value)}
          />
        )}
      </FormField>
      <FormField label="Size">
        {(control) => (
          <select
            {...control}
            className="field__input"
            name="size"
            value={size}
            onChange={(event) => setSize(event.target.value as NodeSize)}
          >
            {NODE_SIZES.map((s) => (
              <option key={s} value={s}>
                {SIZE_WORDS[s]}
              </option>
            ))}
          </select>
        )}
      </FormField>
      <button type="submit" className="button button--primary fed-add__submit" disabled={pending}>
        Add node
      </button>
      {error && (
        <p className="fed__error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
