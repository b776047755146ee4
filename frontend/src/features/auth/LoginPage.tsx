import { useId, useRef, useState, type FormEvent } from 'react';
import { Navigate, useSearchParams } from 'react-router-dom';
import { useAuth } from './useAuth';
import { safeNext } from './next';

export function LoginPage() {
  const session = useAuth();
  const [params] = useSearchParams();
  const next = safeNext(params.get('next'));

  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [submitting, setSubmitting] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const passwordInput = useRef<HTMLInputElement>(null);
  const errorId = useId();

  // Already signed in, or just signed in: go where the person was heading.
  if (session.status === 'signed-in') return <Navigate to={next} replace />;

  async function onSubmit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    setSubmitting(true);
    setError(null);
    try {
      await session.signIn({ username, password });
    } catch (failure) {
      setError((failure as Error).message);
      setPassword('');
      passwordInput.current?.focus();
    } finally {
      setSubmitting(false);
    }
  }

  const described = error ? errorId : undefined;
  return (
    <main className="login">
      <form className="login__card" onSubmit={onSubmit} aria-labelledby="login-title">
        <p className="login__product">QIG Control Center</p>
        <h1 id="login-title" className="login__title">
          Sign in
        </h1>
        <label className="field">
          <span className="field__label">Username</span>
          <input
            className="field__input"
            name="username"
            autoComplete="username"
            autoFocus
            required
            value={username}
            onChange={(event) => setUsername(event.target.value)}
            aria-describedby={described}
            aria-invalid={error ? true : undefined}
          />
        </label>
        <label className="field">
          <span className="field__label">Password</span>
          <input
            ref={passwordInput}
            className="field__input"
            name="password"
            type="password"
            autoComplete="current-password"
            required
            value={password}
            onChange={(event) => setPassword(event.target.value)}
            aria-describedby={described}
            aria-invalid={error ? true : undefined}
          />
        </label>
        {error && (
          <p id={errorId} className="login__error" role="alert">
            {error}
          </p>
        )}
        <button className="button button--primary login__submit" type="submit" disabled={submitting}>
          {submitting ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </main>
  );
}
