import '@testing-library/jest-dom/vitest';
import { afterEach } from 'vitest';
import { FakeWebSocket } from './fakeWebSocket';

afterEach(() => {
  FakeWebSocket.reset();
  for (const cookie of document.cookie.split(';')) {
    const name = cookie.split('=')[0]?.trim();
    if (name) document.cookie = `${name}=; expires=Thu, 01 Jan 1970 00:00:00 GMT; path=/`;
  }
});
