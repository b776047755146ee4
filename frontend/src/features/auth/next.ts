const LOGIN = '/login';

/**
 * Where to go after signing in. Only same-origin paths are accepted: `//evil.example` or
 * `https://…` would make the login page an open redirect.
 */
export function safeNext(next: string | null | undefined): string {
  if (!next || !next.startsWith('/') || next.startsWith('//') || next.startsWith('/\\')) return '/';
  if (next === LOGIN || next.startsWith(`${LOGIN}?`) || next.startsWith(`${LOGIN}/`)) return '/';
  return next;
}

/** `/login`, or `/login?next=<path>` to come back to `next` after signing in. */
export function loginPath(next?: string): string {
  if (next === undefined) return LOGIN;
  return `${LOGIN}?${new URLSearchParams({ next: safeNext(next) })}`;
}
