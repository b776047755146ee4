import react from '@vitejs/plugin-react';
import { defineConfig } from 'vitest/config';

// The Django server (daphne) that the dev server forwards API, websocket and admin traffic to.
const backend = process.env.QIG_BACKEND_URL ?? 'http://127.0.0.1:9200';

// Keep the browser's Host header (no changeOrigin) so Django's CSRF origin check and the
// websocket origin validator see the same host the page was loaded from.
const proxied = (ws = false) => ({ target: backend, ws });

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      '/api': proxied(),
      '/ws': proxied(true),
      '/healthz': proxied(),
      '/readyz': proxied(),
      '/admin': proxied(),
      '/static': proxied(),
    },
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: true,
  },
  test: {
    environment: 'jsdom',
    globals: true,
    setupFiles: ['./src/test/setup.ts'],
    include: ['src/**/*.test.{ts,tsx}'],
    restoreMocks: true,
    unstubGlobals: true,
  },
});
