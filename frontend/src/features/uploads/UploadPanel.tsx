import { useId, useRef, useState, type DragEvent, type FormEvent } from 'react';
import { useSignedInUser } from '../auth/useAuth';
import { FormField } from '../jobs/FormField';
import { PriorityInput } from '../jobs/PriorityInput';
import type { Job } from '../jobs/types';
import { UploadCard } from './UploadCard';
import { extensionOf, formatBytes } from './format';
import { ACCEPTED_EXTENSIONS, ROLES, type Upload } from './types';
import { deleteUpload, uploadFile } from './uploadsApi';
import { useUploads } from './useUploads';
import './uploads.css';

interface Chosen {
  key: string;
  file: File;
}

/** One file of the batch being sent: bytes sent, then the server's answer for it. */
interface Sending {
  key: string;
  name: string;
  size: number;
  phase: 'waiting' | 'uploading' | 'done';
  sent: number;
  total: number;
  uploadId: number | null;
  duplicate: boolean;
  error: string | null;
  job: Job | null;
  jobError: string | null;
}

let nextKey = 0;

/** Drop or choose files, set their domain and priority, and send them one request per file. */
export function UploadPanel() {
  const titleId = useId();
  const user = useSignedInUser();
  const { uploads, newestFirst, loaded, error: listError, put, remove } = useUploads();
  const input = useRef<HTMLInputElement>(null);
  const [chosen, setChosen] = useState<Chosen[]>([]);
  const [dragging, setDragging] = useState(false);
  const [domain, setDomain] = useState('auto');
  const [priority, setPriority] = useState('0');
  const [textColumn, setTextColumn] = useState('');
  const [train, setTrain] = useState(false);
  const [sending, setSending] = useState<Sending[]>([]);
  const [busy, setBusy] = useState(false);
  const [formError, setFormError] = useState<string | null>(null);
  const [deleteError, setDeleteError] = useState<string | null>(null);

  const hasCsv = chosen.some(({ file }) => extensionOf(file.name) === 'csv');

  function add(files: FileList | null) {
    if (!files || files.length === 0) return;
    const added = [...files].map((file) => ({ key: `f${(nextKey += 1)}`, file }));
    setChosen((all) => [...all, ...added]);
    setFormError(null);
  }

  function onDrop(event: DragEvent) {
    event.preventDefault();
    setDragging(false);
    add(event.dataTransfer.files);
  }

  function patch(key: string, change: Partial<Sending>) {
    setSending((all) => all.map((item) => (item.key === key ? { ...item, ...change } : item)));
  }

  async function send(event: FormEvent) {
    event.preventDefault();
    const value = Number(priority);
    if (priority.trim() === '' || !Number.isInteger(value) || value < -100 || value > 100) {
      setFormError('Priority must be a whole number from −100 to 100.');
      return;
    }
    if (chosen.length === 0) {
      setFormError('Choose or drop at least one file first.');
      return;
    }
    setFormError(null);
    setBusy(true);
    const batch = chosen;
    setChosen([]);
    setSending(
      batch.map(({ key, file }) => ({
        key,
        name: file.name,
        size: file.size,
        phase: 'waiting',
        sent: 0,
        total: file.size,
        uploadId: null,
        duplicate: false,
        error: null,
        job: null,
        jobError: null,
      })),
    );
    // One at a time: each file's bar then shows its own bytes, and the server extracts one file
    // while the next is on its way.
    for (const { key, file } of batch) {
      patch(key, { phase: 'uploading' });
      try {
        const outcome = await uploadFile(
          file,
          {
            domain,
            priority: value,
            textColumn: extensionOf(file.name) === 'csv' && textColumn.trim() ? textColumn.trim() : undefined,
            train: user.is_staff && train,
          },
          (sent, total) => patch(key, { sent, total }),
        );
        const result = outcome.body?.results[0];
        if (result?.upload) put(result.upload);
        patch(key, {
          phase: 'done',
          sent: file.size,
          uploadId: result?.upload?.id ?? null,
          duplicate: Boolean(result?.duplicate),
          error: result ? result.error : outcome.error,
          job: outcome.body?.job ?? null,
          jobError: outcome.body?.job_error ?? null,
        });
      } catch (failure) {
        patch(key, { phase: 'done', error: (failure as Error).message });
      }
    }
    setBusy(false);
  }

  async function removeUpload(upload: Upload) {
    if (!window.confirm(`Delete upload #${upload.id} (${upload.original_name}) and its chunks?`)) return;
    setDeleteError(null);
    try {
      await deleteUpload(upload.id);
      remove(upload.id);
    } catch (failure) {
      setDeleteError(`Could not delete #${upload.id}: ${(failure as Error).message}`);
    }
  }

  return (
    <section className="uploads" aria-labelledby={titleId}>
      <h2 id={titleId}>Upload knowledge</h2>
      <form className="uploads__form" noValidate onSubmit={(event) => void send(event)}>
        <div
          className={`dropzone${dragging ? ' dropzone--over' : ''}`}
          data-testid="dropzone"
          onDragEnter={(event) => {
            event.preventDefault();
            setDragging(true);
          }}
          onDragOver={(event) => event.preventDefault()}
          onDragLeave={() => setDragging(false)}
          onDrop={onDrop}
        >
          <p>
            Drop files here, several at once: {ACCEPTED_EXTENSIONS.filter((ext) => ext !== '.htm').join(', ')}
            .
          </p>
          <button type="button" className="button" onClick={() => input.current?.click()}>
            Choose files…
          </button>
          <input
            ref={input}
            type="file"
            multiple
            hidden
            accept={ACCEPTED_EXTENSIONS.join(',')}
            aria-label="Files to upload"
            onChange={(event) => {
              add(event.target.files);
              event.target.value = '';
            }}
          />
        </div>

        {chosen.length > 0 && (
          <ul className="uploads__chosen" aria-label="Chosen files">
            {chosen.map(({ key, file }) => (
              <li key={key}>
                <span>{file.name}</span> <span className="muted">{formatBytes(file.size)}</span>{' '}
                <button
                  type="button"
                  className="button"
                  aria-label={`Remove ${file.name}`}
                  onClick={() => setChosen((all) => all.filter((item) => item.key !== key))}
                >
                  Remove
                </button>
              </li>
            ))}
          </ul>
        )}

        <div className="uploads__options">
          <FormField label="Domain">
            {(control) => (
              <select
                {...control}
                className="field__input"
                value={domain}
                onChange={(event) => setDomain(event.target.value)}
              >
                <option value="auto">auto (by content)</option>
                {ROLES.map((role) => (
                  <option key={role} value={role}>
                    {role}
                  </option>
                ))}
              </select>
            )}
          </FormField>
          <FormField label="Priority (−100…100)">
            {(control) => <PriorityInput {...control} value={priority} onValue={setPriority} />}
          </FormField>
          {hasCsv && (
            <FormField
              label="CSV text column"
              help="The column holding the text; empty: a column named “text”."
            >
              {(control) => (
                <input
                  {...control}
                  className="field__input"
                  value={textColumn}
                  placeholder="text"
                  onChange={(event) => setTextColumn(event.target.value)}
                />
              )}
            </FormField>
          )}
          {user.is_staff && (
            <label className="uploads__train">
              <input type="checkbox" checked={train} onChange={(event) => setTrain(event.target.checked)} />
              Train the routed kernels on it now
            </label>
          )}
        </div>
        {formError && (
          <p className="uploads__error" role="alert">
            {formError}
          </p>
        )}
        <button type="submit" className="button button--primary" disabled={busy || chosen.length === 0}>
          {busy
            ? 'Uploading…'
            : chosen.length
              ? `Upload ${chosen.length} file${chosen.length === 1 ? '' : 's'}`
              : 'Upload'}
        </button>
      </form>

      {sending.length > 0 && (
        <ol className="uploads__results" aria-label="Upload results">
          {sending.map((item) => (
            <SendingRow
              key={item.key}
              item={item}
              upload={item.uploadId ? uploads.get(item.uploadId) : undefined}
            />
          ))}
        </ol>
      )}

      <h3>Recent uploads</h3>
      {listError && (
        <p className="uploads__error" role="alert">
          {listError}
        </p>
      )}
      {deleteError && (
        <p className="uploads__error" role="alert">
          {deleteError}
        </p>
      )}
      {!loaded && !listError && <p className="muted">Loading uploads…</p>}
      {loaded && newestFirst.length === 0 && <p className="muted">Nothing uploaded yet.</p>}
      <div className="uploads__recent" data-testid="recent-uploads">
        {newestFirst.map((upload) => (
          <UploadCard key={upload.id} upload={upload} anchor>
            {(user.is_staff || upload.uploaded_by === user.username) && (
              <button type="button" className="button" onClick={() => void removeUpload(upload)}>
                Delete
              </button>
            )}
          </UploadCard>
        ))}
      </div>
    </section>
  );
}

function SendingRow({ item, upload }: { item: Sending; upload: Upload | undefined }) {
  const percent = item.total ? Math.round((item.sent / item.total) * 100) : 0;
  return (
    <li className="uploads__result" data-testid="upload-result" aria-label={`Result for ${item.name}`}>
      <div className="uploads__result-head">
        <span className="upload-card__name">{item.name}</span>
        {item.phase !== 'done' ? (
          <>
            <progress value={item.sent} max={item.total || 1} aria-label={`Uploading ${item.name}`} />
            <span className="muted">
              {item.phase === 'waiting'
                ? 'waiting'
                : `${formatBytes(item.sent)} / ${formatBytes(item.total)} (${percent}%)`}
            </span>
          </>
        ) : item.error ? (
          <span className="uploads__error" role="alert">
            {item.duplicate ? 'Duplicate: ' : 'Error: '}
            {item.error}
          </span>
        ) : item.duplicate ? (
          <span>
            Already uploaded:{' '}
            {item.uploadId ? (
              <a href={`#upload-${item.uploadId}`}>see upload #{item.uploadId}</a>
            ) : (
              'same content'
            )}
          </span>
        ) : (
          <span className="uploads__stored">Stored</span>
        )}
      </div>
      {item.job && (
        <p>
          Queued <a href={`#job-${item.job.id}`}>adapter job #{item.job.id}</a> for kernel
          {item.job.target_kernels.length === 1 ? '' : 's'} {item.job.target_kernels.join(', ') || '(routed)'}
          .
        </p>
      )}
      {item.jobError && (
        <p className="uploads__error" role="alert">
          No training was queued: {item.jobError}
        </p>
      )}
      {upload && !item.duplicate && <UploadCard upload={upload} />}
    </li>
  );
}
