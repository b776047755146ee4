import type { CsrfResponse, ErrorBody } from './types';

/** An HTTP failure, with the server's own explanation as the message where it gave one. */
export class ApiError extends Error {
  readonly status: number;
  readonly body: unknown;

  constructor(status: number, message: string, body: unknown = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.body = body;
  }

  /** True when the server says there is no signed-in session (DRF answers 401 or 403). */
  get isUnauthenticated(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

type Method = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

const SAFE_METHODS: ReadonlySet<Method> = new Set(['GET']);
export const CSRF_COOKIE = 'csrftoken';
export const CSRF_HEADER = 'X-CSRFToken';
const CSRF_PATH = '/api/v1/auth/csrf/';

export function readCookie(name: string): string | null {
  for (const part of document.cookie.split(';')) {
    const [key, ...rest] = part.trim().split('=');
    if (key === name) return decodeURIComponent(rest.join('='));
  }
  return null;
}

/**
 * The token Django expects in `X-CSRFToken`. The cookie is read on every call (never cached)
 * because Django rotates the token at login; the endpoint is asked only when no cookie is
 * readable yet (first visit, or an HttpOnly cookie).
 */
async function csrfToken(): Promise<string> {
  const fromCookie = readCookie(CSRF_COOKIE);
  if (fromCookie) return fromCookie;
  const { csrfToken: token } = await request<CsrfResponse>('GET', CSRF_PATH);
  return token;
}

/** The message a person should read: DRF's `detail`, else the first field error, else the status. */
export function errorMessage(status: number, statusText: string, body: unknown): string {
  if (body && typeof body === 'object') {
    const { detail, ...fields } = body as ErrorBody;
    const said = Array.isArray(detail) ? detail[0] : detail;
    if (typeof said === 'string' && said) return said;
    for (const [field, problems] of Object.entries(fields)) {
      const first = Array.isArray(problems) ? problems[0] : problems;
      if (typeof first === 'string') {
        return field === 'non_field_errors' ? first : `${field}: ${first}`;
      }
    }
  }
  return `Request failed: ${status} ${statusText}`.trim();
}

async function parseBody(response: Response): Promise<unknown> {
  if (response.status === 204) return null;
  const text = await response.text();
  if (!text) return null;
  const type = response.headers.get('Content-Type') ?? '';
  if (!type.includes('json')) return text;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ApiError(response.status, `The server sent malformed JSON (HTTP ${response.status}).`, text);
  }
}

/** Same-origin JSON request with the session cookie; unsafe methods carry the CSRF token. */
export async function request<T>(method: Method, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (!SAFE_METHODS.has(method)) headers[CSRF_HEADER] = await csrfToken();

  let response: Response;
  try {
    response = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new ApiError(0, `Cannot reach the server (${reason}).`);
  }

  const parsed = await parseBody(response);
  if (!response.ok) {
    throw new ApiError(response.status, errorMessage(response.status, response.statusText, parsed), parsed);
  }
  return parsed as T;
}

export const api = {
  get: <T>(path: string) => request<T>('GET', path),
  post: <T>(path: string, body?: unknown) => request<T>('POST', path, body),
  put: <T>(path: string, body?: unknown) => request<T>('PUT', path, body),
  patch: <T>(path: string, body?: unknown) => request<T>('PATCH', path, body),
  delete: <T>(path: string) => request<T>('DELETE', path),
};
