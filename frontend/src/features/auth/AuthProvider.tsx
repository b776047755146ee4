import { useCallback, useEffect, useMemo, useState, type ReactNode } from 'react';
import { ApiError } from '../../api/client';
import type { LoginRequest } from '../../api/types';
import { AuthContext, type AuthSession, type AuthState } from './useAuth';
import { fetchCurrentUser, login, logout } from './authApi';

function stateAfterFailedCheck(error: unknown): AuthState {
  if (error instanceof ApiError && error.isUnauthenticated)
    return { status: 'signed-out', reason: 'no-session' };
  return { status: 'error', message: error instanceof Error ? error.message : String(error) };
}

/** Owns the session: asks the server who is signed in, and changes it on sign-in and sign-out. */
export function AuthProvider({ children }: { children: ReactNode }) {
  const [state, setState] = useState<AuthState>({ status: 'loading' });

  // Each attempt asks the server once; "Try again" after an error starts another.
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    let current = true;
    fetchCurrentUser().then(
      (user) => current && setState({ status: 'signed-in', user }),
      (error: unknown) => current && setState(stateAfterFailedCheck(error)),
    );
    return () => {
      current = false;
    };
  }, [attempt]);

  const retry = useCallback(() => {
    setState({ status: 'loading' });
    setAttempt((n) => n + 1);
  }, []);

  const signIn = useCallback(async (credentials: LoginRequest) => {
    const user = await login(credentials);
    setState({ status: 'signed-in', user });
    return user;
  }, []);

  const signOut = useCallback(async () => {
    await logout();
    setState({ status: 'signed-out', reason: 'signed-out' });
  }, []);

  const sessionEnded = useCallback(() => {
    setState({ status: 'signed-out', reason: 'no-session' });
  }, []);

  const verifySession = useCallback(async () => {
    try {
      await fetchCurrentUser();
    } catch (error) {
      if (error instanceof ApiError && error.isUnauthenticated) sessionEnded();
      // Any other failure (server down, restarting) leaves the session as it was: whoever asked
      // is already showing that the server cannot be reached.
    }
  }, [sessionEnded]);

  const session = useMemo<AuthSession>(
    () => ({ ...state, retry, signIn, signOut, sessionEnded, verifySession }),
    [state, retry, signIn, signOut, sessionEnded, verifySession],
  );

  return <AuthContext.Provider value={session}>{children}</AuthContext.Provider>;
}
