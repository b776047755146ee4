// Shapes of the backend's JSON, written against the documented contract of the auth endpoints.
// The end-to-end suite checks them against the OpenAPI schema the server publishes at
// /api/v1/schema/ (e2e/shell.spec.ts), so a drift on either side fails a test.

/** `GET /api/v1/auth/me/` and `POST /api/v1/auth/login/`. */
export interface User {
  id: number;
  username: string;
  email: string;
  is_staff: boolean;
}

/** `User`'s fields, checked against the type (types.test.ts) and the OpenAPI schema (e2e). */
export const USER_FIELDS = ['id', 'username', 'email', 'is_staff'] as const;

/** `GET /api/v1/auth/csrf/`; the response also sets the `csrftoken` cookie. */
export interface CsrfResponse {
  csrfToken: string;
}

export interface LoginRequest {
  username: string;
  password: string;
}

/** DRF's error body: `{"detail": "..."}`, or field errors `{"field": ["..."]}`. */
export interface ErrorBody {
  detail?: string | string[];
  [field: string]: unknown;
}
