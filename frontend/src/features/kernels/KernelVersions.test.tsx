import { screen, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { ADMIN, ANALYST, json, stubServer } from '../../test/http';
import { renderSignedIn } from '../jobs/testing';
import { KernelVersions, percent } from './KernelVersions';
import type { KernelVersion } from './types';

const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000).toISOString();

function version(n: number, current: boolean): KernelVersion {
  return {
    version: `.57.v${n}`,
    published_at: minutesAgo(60 - n * 10),
    current,
    radius: 1 + n / 10,
    heldout: {
      own_before: 7,
      own_after: 7 - n,
      general_before: 5,
      general_after: 5 + n / 100,
      general_change: n / 500,
      heldin_before: 7,
      heldin_after: 1,
      own_is_heldout: true,
    },
    calibration: null,
    job: 10 + n,
    has_meta: true,
  };
}

const newestFirst = (serving: number) => [3, 2, 1].map((n) => version(n, n === serving));

beforeEach(() => {
  document.cookie = 'csrftoken=csrf-from-cookie; path=/';
});

describe('KernelVersions', () => {
  it('lists the versions newest first with their held-out figures and radius, and rolls back for staff', async () => {
    const requests = stubServer({
      'GET /api/v1/kernels/57/versions/': () => json(200, newestFirst(3)),
      'POST /api/v1/kernels/57/rollback/': () =>
        json(200, { index: 57, version: '.57.v2', versions: newestFirst(2) }),
    });
    const confirm = vi.spyOn(window, 'confirm').mockReturnValue(true);
    renderSignedIn(ADMIN, <KernelVersions index={57} revision="" />);

    const rows = await screen.findAllByTestId('kernel-version');
    expect(rows).toHaveLength(3);
    expect(rows[0]).toHaveAttribute('aria-current', 'true');
    expect(rows[0]).toHaveTextContent('serving');
    expect(rows[0]).toHaveTextContent('job #13');
    expect(rows[0]).toHaveTextContent('held-out 7.000 → 4.000 · general +0.6 % · r 1.300');
    expect(rows[2]).not.toHaveAttribute('aria-current');

    await userEvent.click(screen.getByRole('button', { name: 'Roll back to the previous version' }));
    expect(confirm).toHaveBeenCalledOnce();
    expect(await screen.findByRole('status')).toHaveTextContent('Rolled back: kernel 57 now serves .57.v2.');
    const after = screen.getAllByTestId('kernel-version');
    expect(after[1]).toHaveAttribute('aria-current', 'true');
    expect(within(after[1]!).getByText('serving')).toBeInTheDocument();
    expect(requests.map((r) => `${r.method} ${r.path}`)).toEqual([
      'GET /api/v1/kernels/57/versions/',
      'POST /api/v1/kernels/57/rollback/',
    ]);
    expect(requests[1]!.headers['X-CSRFToken']).toBe('csrf-from-cookie');
  });

  it('offers no rollback when the oldest version kept is served, and says why a rollback failed', async () => {
    stubServer({
      'GET /api/v1/kernels/57/versions/': () => json(200, newestFirst(2)),
      'POST /api/v1/kernels/57/rollback/': () =>
        json(409, { detail: 'kernel 57 has no earlier version to roll back to (1 kept)' }),
    });
    vi.spyOn(window, 'confirm').mockReturnValue(true);
    const { unmount } = renderSignedIn(ADMIN, <KernelVersions index={57} revision="" />);
    await userEvent.click(await screen.findByRole('button', { name: 'Roll back to the previous version' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Rollback failed: kernel 57 has no earlier version to roll back to (1 kept)',
    );
    unmount();

    stubServer({ 'GET /api/v1/kernels/57/versions/': () => json(200, newestFirst(1)) });
    renderSignedIn(ADMIN, <KernelVersions index={57} revision="" />);
    expect(await screen.findAllByTestId('kernel-version')).toHaveLength(3);
    expect(screen.queryByRole('button', { name: /Roll back/ })).not.toBeInTheDocument();
  });

  it('shows developers the history without the rollback button', async () => {
    stubServer({ 'GET /api/v1/kernels/57/versions/': () => json(200, newestFirst(3)) });
    renderSignedIn(ANALYST, <KernelVersions index={57} revision="" />);
    expect(await screen.findAllByTestId('kernel-version')).toHaveLength(3);
    expect(screen.queryByRole('button', { name: /Roll back/ })).not.toBeInTheDocument();
  });

  it('formats relative changes with a sign', () => {
    expect(percent(0.0123)).toBe('+1.2 %');
    expect(percent(-0.5)).toBe('−50.0 %');
    expect(percent(null)).toBe('—');
  });
});
