import { render, screen } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter, Route, Routes, useLocation } from 'react-router-dom';
import { describe, expect, it } from 'vitest';
import { ADMIN, json, stubServer } from '../../test/http';
import { AuthProvider } from './AuthProvider';
import { LoginPage } from './LoginPage';

function Landed() {
  const location = useLocation();
  return <p>landed on {location.pathname}</p>;
}

function renderLogin(url = '/login') {
  render(
    <MemoryRouter initialEntries={[url]}>
      <AuthProvider>
        <Routes>
          <Route path="/login" element={<LoginPage />} />
          <Route path="*" element={<Landed />} />
        </Routes>
      </AuthProvider>
    </MemoryRouter>,
  );
}

const anonymous = () => json(403, { detail: 'Authentication credentials were not provided.' });

describe('LoginPage', () => {
  it('signs in with the CSRF token and goes where the person was heading', async () => {
    const requests = stubServer({
      'GET /api/v1/auth/me/': anonymous,
      'GET /api/v1/auth/csrf/': () => json(200, { csrfToken: 'token-from-server' }),
      'POST /api/v1/auth/login/': () => json(200, ADMIN),
    });
    renderLogin('/login?next=%2Fjobs%3Fstatus%3Drunning');

    await userEvent.type(screen.getByLabelText('Username'), 'admin');
    await userEvent.type(screen.getByLabelText('Password'), 'correct horse{Enter}');

    expect(await screen.findByText('landed on /jobs')).toBeInTheDocument();
    const login = requests.find((r) => r.method === 'POST');
    expect(login?.path).toBe('/api/v1/auth/login/');
    expect(login?.body).toEqual({ username: 'admin', password: 'correct horse' });
    expect(login?.headers['X-CSRFToken']).toBe('token-from-server');
    expect(login?.headers['Content-Type']).toBe('application/json');
  });

  it('shows the server’s message on bad credentials and lets the person try again', async () => {
    stubServer({
      'GET /api/v1/auth/me/': anonymous,
      'GET /api/v1/auth/csrf/': () => json(200, { csrfToken: 'token-from-server' }),
      'POST /api/v1/auth/login/': () => json(400, { detail: 'Invalid username or password.' }),
    });
    renderLogin();

    await userEvent.type(screen.getByLabelText('Username'), 'admin');
    await userEvent.type(screen.getByLabelText('Password'), 'wrong');
    await userEvent.click(screen.getByRole('button', { name: 'Sign in' }));

    expect(await screen.findByRole('alert')).toHaveTextContent('Invalid username or password.');
    expect(screen.getByLabelText('Password')).toHaveValue('');
    expect(screen.getByLabelText('Password')).toHaveFocus();
    expect(screen.getByLabelText('Password')).toHaveAttribute('aria-invalid', 'true');
    expect(screen.getByLabelText('Username')).toHaveValue('admin');
    expect(screen.getByRole('button', { name: 'Sign in' })).toBeEnabled();
  });

  it('can be used with the keyboard alone', async () => {
    stubServer({
      'GET /api/v1/auth/me/': anonymous,
      'GET /api/v1/auth/csrf/': () => json(200, { csrfToken: 't' }),
      'POST /api/v1/auth/login/': () => json(200, ADMIN),
    });
    renderLogin();

    expect(screen.getByLabelText('Username')).toHaveFocus();
    await userEvent.keyboard('admin');
    await userEvent.tab();
    expect(screen.getByLabelText('Password')).toHaveFocus();
    await userEvent.keyboard('secret');
    await userEvent.tab();
    expect(screen.getByRole('button', { name: 'Sign in' })).toHaveFocus();
    await userEvent.keyboard('{Enter}');
    expect(await screen.findByText('landed on /')).toBeInTheDocument();
  });

  it('sends someone already signed in straight on, refusing off-site next targets', async () => {
    stubServer({ 'GET /api/v1/auth/me/': () => json(200, ADMIN) });
    renderLogin('/login?next=//evil.example/');
    expect(await screen.findByText('landed on /')).toBeInTheDocument();
  });
});
