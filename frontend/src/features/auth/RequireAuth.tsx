import type { ReactNode } from 'react';
import { Navigate, useLocation } from 'react-router-dom';
import { useAuth } from './useAuth';
import { loginPath } from './next';

/** Renders its children for a signed-in user; otherwise sends the browser to the login page. */
export function RequireAuth({ children }: { children: ReactNode }) {
  const session = useAuth();
  const location = useLocation();

  switch (session.status) {
    case 'loading':
      return (
        <div className="splash" role="status">
          Checking your session…
        </div>
      );
    case 'error':
      return (
        <div className="splash" role="alert">
          <p>Could not check your session: {session.message}</p>
          <button type="button" className="button" onClick={session.retry}>
            Try again
          </button>
        </div>
      );
    case 'signed-out': {
      const here = location.pathname + location.search + location.hash;
      const next = session.reason === 'signed-out' ? undefined : here;
      return <Navigate to={loginPath(next)} replace />;
    }
    case 'signed-in':
      return children;
  }
}
