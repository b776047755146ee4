import { useState } from 'react';
import { Link, NavLink } from 'react-router-dom';
import { useAuth, useSignedInUser } from '../auth/useAuth';
import { TelemetryIndicator } from './TelemetryIndicator';

/** The shell's top bar: product, live telemetry, the signed-in user and "Sign out". */
export function Header() {
  const session = useAuth();
  const user = useSignedInUser();
  const [signingOut, setSigningOut] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function signOut() {
    setSigningOut(true);
    setError(null);
    try {
      await session.signOut();
    } catch (failure) {
      setError(`Sign out failed: ${(failure as Error).message}`);
      setSigningOut(false);
    }
  }

  return (
    <header className="header">
      <Link to="/" className="header__product">
        QIG Control Center
      </Link>
      <nav className="header__nav" aria-label="Main">
        <NavLink to="/" end className="header__navlink">
          Dashboard
        </NavLink>
        <NavLink to="/chat" className="header__navlink">
          Chat
        </NavLink>
        <NavLink to="/knowledge" className="header__navlink">
          Knowledge &amp; training
        </NavLink>
      </nav>
      <TelemetryIndicator />
      <div className="header__user">
        <span className="header__username" data-testid="username">
          {user.username}
        </span>
        {user.is_staff && (
          <span className="badge" title="Staff account: can use the Django admin">
            admin
          </span>
        )}
        <button type="button" className="button" onClick={() => void signOut()} disabled={signingOut}>
          {signingOut ? 'Signing out…' : 'Sign out'}
        </button>
      </div>
      {error && (
        <p className="header__error" role="alert">
          {error}
        </p>
      )}
    </header>
  );
}
