import { describe, expect, it } from 'vitest';
import { json, stubServer } from '../test/http';
import { api, ApiError, errorMessage } from './client';

describe('api client', () => {
  it('sends GETs same-origin with the session cookie and no CSRF token', async () => {
    const requests = stubServer({ 'GET /api/v1/things/': () => json(200, [1, 2]) });
    await expect(api.get('/api/v1/things/')).resolves.toEqual([1, 2]);
    expect(requests).toHaveLength(1);
    expect(requests[0]?.headers['X-CSRFToken']).toBeUndefined();
    const init = (fetch as unknown as { mock: { calls: [string, RequestInit][] } }).mock.calls[0]?.[1];
    expect(init?.credentials).toBe('same-origin');
  });

  it('fetches a CSRF token before an unsafe request when no cookie holds one', async () => {
    const requests = stubServer({
      'GET /api/v1/auth/csrf/': () => json(200, { csrfToken: 'abc' }),
      'DELETE /api/v1/things/1/': () => json(204),
    });
    await expect(api.delete('/api/v1/things/1/')).resolves.toBeNull();
    expect(requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /api/v1/auth/csrf/',
      'DELETE /api/v1/things/1/',
    ]);
    expect(requests[1]?.headers['X-CSRFToken']).toBe('abc');
  });

  it('uses the csrftoken cookie when there is one, read afresh each time', async () => {
    const requests = stubServer({ 'POST /api/v1/things/': () => json(201, { id: 1 }) });
    document.cookie = 'csrftoken=first; path=/';
    await api.post('/api/v1/things/', { name: 'a' });
    document.cookie = 'csrftoken=rotated; path=/';
    await api.post('/api/v1/things/', { name: 'b' });
    expect(requests.map((r) => r.headers['X-CSRFToken'])).toEqual(['first', 'rotated']);
  });

  it('surfaces the server’s detail message with the status', async () => {
    stubServer({ 'GET /api/v1/x/': () => json(404, { detail: 'No such kernel.' }) });
    const error = await api.get('/api/v1/x/').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 404, message: 'No such kernel.' });
  });

  it('reports an unreachable server as status 0', async () => {
    stubServer({ 'GET /api/v1/x/': () => Promise.reject(new TypeError('Failed to fetch')) });
    await expect(api.get('/api/v1/x/')).rejects.toMatchObject({
      status: 0,
      message: 'Cannot reach the server (Failed to fetch).',
    });
  });
});

describe('errorMessage', () => {
  it('names the field of a validation error', () => {
    expect(errorMessage(400, 'Bad Request', { name: ['This field is required.'] })).toBe(
      'name: This field is required.',
    );
    expect(errorMessage(400, 'Bad Request', { non_field_errors: ['Passwords differ.'] })).toBe(
      'Passwords differ.',
    );
  });

  it('reads a detail sent as a list', () => {
    expect(errorMessage(400, 'Bad Request', { detail: ['Invalid username or password.'] })).toBe(
      'Invalid username or password.',
    );
  });

  it('falls back to the status when the body explains nothing', () => {
    expect(errorMessage(502, 'Bad Gateway', '<html>')).toBe('Request failed: 502 Bad Gateway');
  });
});
