import type { ReactNode } from 'react';
import type { Upload } from './types';
import { formatBytes } from './format';

function statusText(upload: Upload): string {
  if (upload.status === 'failed')
    return `failed: ${upload.error || upload.status_detail || 'no reason given'}`;
  return upload.status_detail ? `${upload.status}: ${upload.status_detail}` : upload.status;
}

interface Props {
  upload: Upload;
  /** The element id, for links to it (only one card per upload should have it). */
  anchor?: boolean;
  children?: ReactNode;
}

/** One stored upload: what it is, what was extracted, and which kernels will learn it. */
export function UploadCard({ upload, anchor = false, children }: Props) {
  const routed = upload.routed ?? [];
  return (
    <article
      className="upload-card"
      id={anchor ? `upload-${upload.id}` : undefined}
      data-testid={`upload-${upload.id}`}
      aria-label={`Upload ${upload.id}: ${upload.original_name}`}
    >
      <div className="upload-card__head">
        <span className="upload-card__name">
          #{upload.id} {upload.original_name}
        </span>
        <span
          className={`upload-card__status upload-card__status--${upload.status}`}
          data-testid="upload-status"
        >
          {statusText(upload)}
        </span>
      </div>
      <dl className="upload-card__facts">
        <div>
          <dt>Type</dt>
          <dd>{upload.file_type || '—'}</dd>
        </div>
        <div>
          <dt>Size</dt>
          <dd>{formatBytes(upload.size_bytes)}</dd>
        </div>
        <div>
          <dt>Chunks</dt>
          <dd data-testid="upload-chunks">{upload.n_chunks ?? '—'}</dd>
        </div>
        <div>
          <dt>Tokens</dt>
          <dd data-testid="upload-tokens">{upload.n_tokens ?? '—'}</dd>
        </div>
        {upload.n_records > 0 && (upload.file_type === 'jsonl' || upload.file_type === 'csv') && (
          <div>
            <dt>Records</dt>
            <dd>{upload.n_records}</dd>
          </div>
        )}
        <div>
          <dt>Domain</dt>
          <dd>{upload.domain}</dd>
        </div>
        <div>
          <dt>Priority</dt>
          <dd>{upload.priority}</dd>
        </div>
        {upload.uploaded_by && (
          <div>
            <dt>By</dt>
            <dd>{upload.uploaded_by}</dd>
          </div>
        )}
      </dl>
      {routed.length > 0 ? (
        <table className="upload-card__routed" data-testid="routed-kernels">
          <caption>Kernels that will learn it</caption>
          <thead>
            <tr>
              <th scope="col">Kernel</th>
              <th scope="col">Role</th>
              <th scope="col">Fisher–Rao distance</th>
            </tr>
          </thead>
          <tbody>
            {routed.map((route) => (
              <tr key={route.kernel}>
                <td>#{route.kernel}</td>
                <td>{route.role}</td>
                <td>{typeof route.distance === 'number' ? route.distance.toFixed(4) : '—'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        upload.status !== 'failed' && (
          <p className="muted upload-card__none">
            {upload.status === 'pending'
              ? 'Routed to kernels once it is ready.'
              : 'No kernels routed (nothing to learn from it).'}
          </p>
        )
      )}
      {upload.preview && (
        <details className="upload-card__preview">
          <summary>
            Preview of the extracted text (
            {upload.n_characters?.toLocaleString('en') ?? upload.preview.length} characters)
          </summary>
          <pre>{upload.preview}</pre>
        </details>
      )}
      {children}
    </article>
  );
}
