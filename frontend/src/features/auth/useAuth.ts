import { createContext, useContext } from 'react';
import type { LoginRequest, User } from '../../api/types';

export type AuthState =
  | { status: 'loading' }
  | { status: 'signed-in'; user: User }
  /** `signed-out`: the person pressed "Sign out"; `no-session`: the server knows no session. */
  | { status: 'signed-out'; reason: 'signed-out' | 'no-session' }
  | { status: 'error'; message: string };

export type AuthSession = AuthState & {
  /** Ask the server again who is signed in (after an error). */
  retry: () => void;
  /** Rejects with an `ApiError` whose message is the server's `detail`. */
  signIn: (credentials: LoginRequest) => Promise<User>;
  signOut: () => Promise<void>;
  /** Something (the telemetry socket, an API call) learnt that the session is gone. */
  sessionEnded: () => void;
  /** Ask the server whether the session still stands; sign out locally if it does not. */
  verifySession: () => Promise<void>;
};

export const AuthContext = createContext<AuthSession | null>(null);

export function useAuth(): AuthSession {
  const session = useContext(AuthContext);
  if (!session) throw new Error('useAuth must be used inside <AuthProvider>');
  return session;
}

/** The signed-in user; only for components rendered behind <RequireAuth>. */
export function useSignedInUser(): User {
  const session = useAuth();
  if (session.status !== 'signed-in') throw new Error('useSignedInUser needs a signed-in session');
  return session.user;
}
