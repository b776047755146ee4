import { vi } from 'vitest';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: unknown;
}

export type Route = (request: RecordedRequest) => Response | Promise<Response>;

export function json(status: number, body?: unknown): Response {
  if (body === undefined) return new Response(null, { status });
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

/**
 * Replaces `fetch` (the network is outside our process) with routes keyed by "METHOD /path".
 * Unrouted requests fail the test loudly. Returns the list of requests made, in order.
 */
export function stubServer(routes: Record<string, Route>): RecordedRequest[] {
  const requests: RecordedRequest[] = [];
  vi.stubGlobal(
    'fetch',
    vi.fn(async (input: RequestInfo | URL, init: RequestInit = {}) => {
      const path = String(input);
      const method = (init.method ?? 'GET').toUpperCase();
      const request: RecordedRequest = {
        method,
        path,
        headers: { ...(init.headers as Record<string, string>) },
        body: typeof init.body === 'string' ? JSON.parse(init.body) : undefined,
      };
      requests.push(request);
      const route = routes[`${method} ${path}`];
      if (!route) throw new Error(`unexpected request ${method} ${path}`);
      return route(request);
    }),
  );
  return requests;
}

export const ADMIN = { id: 1, username: 'admin', email: '', is_staff: true };
export const ANALYST = { id: 2, username: 'ada', email: 'ada@example.org', is_staff: false };
