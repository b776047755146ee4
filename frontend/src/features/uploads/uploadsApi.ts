import { ApiError, CSRF_COOKIE, CSRF_HEADER, api, errorMessage, readCookie } from '../../api/client';
import type { CsrfResponse } from '../../api/types';
import type { Page } from '../jobs/types';
import type { Upload, UploadResponse } from './types';

export const UPLOADS_PATH = '/api/v1/uploads/';

export const listUploads = () => api.get<Page<Upload>>(UPLOADS_PATH);
export const deleteUpload = (id: number) => api.delete<null>(`${UPLOADS_PATH}${id}/`);

export interface UploadFields {
  domain: string;
  priority: number;
  /** Sent for csv files only. */
  textColumn?: string;
  /** Staff only: queue an adapter job for the routed kernels. */
  train: boolean;
}

export interface UploadOutcome {
  status: number;
  /** The server's per-file answer, or null when it answered without one (403, 413, a proxy…). */
  body: UploadResponse | null;
  /** What went wrong when there is no per-file answer. */
  error: string | null;
}

async function csrfToken(): Promise<string> {
  const fromCookie = readCookie(CSRF_COOKIE);
  if (fromCookie) return fromCookie;
  const { csrfToken: token } = await api.get<CsrfResponse>('/api/v1/auth/csrf/');
  return token;
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}

/**
 * One file, one request, through XMLHttpRequest (fetch cannot report upload progress):
 * `onProgress(sent, total)` follows the bytes leaving the browser. Resolves with the server's
 * answer whatever its status; rejects only on a network failure.
 */
export async function uploadFile(
  file: File,
  fields: UploadFields,
  onProgress: (sent: number, total: number) => void,
): Promise<UploadOutcome> {
  const token = await csrfToken();
  const form = new FormData();
  form.append('file', file, file.name);
  form.append('domain', fields.domain);
  form.append('priority', String(fields.priority));
  if (fields.textColumn) form.append('text_column', fields.textColumn);
  form.append('train', fields.train ? 'true' : 'false');

  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', UPLOADS_PATH);
    xhr.withCredentials = true;
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.setRequestHeader(CSRF_HEADER, token);
    xhr.upload.onprogress = (event) =>
      onProgress(event.loaded, event.lengthComputable ? event.total : file.size);
    xhr.onerror = () => reject(new ApiError(0, 'Cannot reach the server (the upload was interrupted).'));
    xhr.onload = () => {
      const body = parse(xhr.responseText);
      if (body && typeof body === 'object' && Array.isArray((body as UploadResponse).results)) {
        const answer = body as UploadResponse;
        const first = answer.results[0];
        resolve({ status: xhr.status, body: answer, error: first?.error ?? null });
        return;
      }
      const failed = xhr.status < 200 || xhr.status >= 300;
      resolve({
        status: xhr.status,
        body: null,
        error: failed
          ? errorMessage(xhr.status, xhr.statusText, body)
          : 'The server gave no result for this file.',
      });
    };
    xhr.send(form);
  });
}
