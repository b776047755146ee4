import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { describe, expect, it } from 'vitest';
import { json, stubServer } from '../../test/http';
import { renderLive } from '../dashboard/testing';
import { KernelGrid, cellRadius } from './KernelGrid';
import { applyKernelEvent, type KernelInfo } from './types';

const ROLES = ['HEART', 'PERCEPTION', 'MEMORY', 'ACTION', 'PREDICTION', 'ETHICS', 'META', 'INTEGRATION'];

/** 240 kernels on 8 rings of 30, as the Petrie projection lays them out. */
function kernels(): KernelInfo[] {
  return Array.from({ length: 240 }, (_, index) => {
    const ring = Math.floor(index / 30);
    const angle = ((index % 30) / 30) * 2 * Math.PI;
    const radius = 0.3 + 0.1 * ring;
    return {
      index,
      role: ROLES[index % 8]!,
      status: index === 5 ? 'active' : 'standby',
      x: radius * Math.cos(angle),
      y: radius * Math.sin(angle),
      anchor_drift: index === 5 ? 0.0123 : 0,
      phi: index === 5 ? 0.41 : null,
      last_trained_at: null,
      adapter_bytes: index === 5 ? 2 * 1024 * 1024 : 0,
    };
  });
}

function history(send: (topic: string, payload: unknown) => void) {
  send('kernels', { kind: 'kernels.history', roles: ROLES, kernels: kernels() });
}

const cells = () => screen.getAllByTestId('kernel-cell');
const cell = (index: number) => cells().find((c) => c.getAttribute('data-index') === String(index))!;

describe('KernelGrid', () => {
  it('loads, then draws the 240 kernels with their states counted', () => {
    const { send } = renderLive(<KernelGrid />);
    expect(screen.getByText('Loading the 240 kernels…')).toBeInTheDocument();
    history(send);
    expect(cells()).toHaveLength(240);
    expect(screen.getByTestId('count-active')).toHaveTextContent('● 1 active');
    expect(screen.getByTestId('count-standby')).toHaveTextContent('○ 239 standby');
    expect(screen.getByTestId('count-learning')).toHaveTextContent('◐ 0 learning');
  });

  it('changes one cell when a kernel starts and finishes learning', () => {
    const { send } = renderLive(<KernelGrid />);
    history(send);
    send('kernels', { kind: 'kernel.status', index: 17, status: 'learning' });
    expect(cell(17)).toHaveAttribute('data-status', 'learning');
    expect(screen.getByTestId('count-learning')).toHaveTextContent('◐ 1 learning');
    send('kernels', {
      kind: 'kernel.trained',
      index: 17,
      status: 'active',
      anchor_distance: 0.004,
      adapter_bytes: 4096,
      phi: 0.5,
      time: new Date().toISOString(),
    });
    expect(cell(17)).toHaveAttribute('data-status', 'active');
    expect(screen.getByTestId('count-active')).toHaveTextContent('● 2 active');
  });

  it('filters by role: other roles dim and leave the keyboard order', async () => {
    const { send } = renderLive(<KernelGrid />);
    history(send);
    await userEvent.click(screen.getByRole('button', { name: 'MEMORY' }));
    expect(screen.getByRole('button', { name: 'MEMORY' })).toHaveAttribute('aria-pressed', 'true');
    const memory = cells().filter((c) => !c.classList.contains('kcell--dimmed'));
    expect(memory).toHaveLength(30);
    expect(memory.every((c) => c.getAttribute('data-role') === 'MEMORY')).toBe(true);
    expect(screen.getByTestId('count-standby')).toHaveTextContent('○ 30 standby');
  });

  it('shows a kernel’s details on click and moves between cells with the keyboard', async () => {
    const { send } = renderLive(<KernelGrid />);
    stubServer({ 'GET /api/v1/kernels/5/versions/': () => json(200, []) });
    history(send);
    await userEvent.click(cell(5));
    const details = screen.getByTestId('kernel-details');
    expect(within(details).getByRole('heading', { level: 3 })).toHaveTextContent('Kernel 5 ● active');
    expect(details).toHaveTextContent('ETHICS');
    expect(details).toHaveTextContent('0.0123');
    expect(details).toHaveTextContent('0.410');
    expect(details).toHaveTextContent('2.0 MiB');

    // Tab: the nine filter buttons, then one stop in the grid; arrows move, Enter selects.
    cell(5).blur();
    await userEvent.click(screen.getByRole('button', { name: 'All roles' }));
    for (let i = 0; i < 8; i += 1) await userEvent.tab();
    expect(screen.getByRole('button', { name: 'INTEGRATION' })).toHaveFocus();
    await userEvent.tab();
    expect(document.activeElement?.getAttribute('data-index')).toBe('5');
    await userEvent.keyboard('{ArrowRight}');
    expect(document.activeElement?.getAttribute('data-index')).toBe('6');
    await userEvent.keyboard('{Enter}');
    expect(within(screen.getByTestId('kernel-details')).getByRole('heading', { level: 3 })).toHaveTextContent(
      'Kernel 6',
    );
    await userEvent.keyboard('{End}');
    expect(document.activeElement?.getAttribute('data-index')).toBe('239');
  });

  it('reads a selected trained kernel’s versions again when it is rolled back live', async () => {
    const versions = (serving: string) =>
      ['.5.v2', '.5.v1'].map((version) => ({
        version,
        published_at: new Date().toISOString(),
        current: version === serving,
        radius: 1.2,
        heldout: null,
        calibration: null,
        job: null,
        has_meta: false,
      }));
    let serving = '.5.v2';
    const requests = stubServer({ 'GET /api/v1/kernels/5/versions/': () => json(200, versions(serving)) });
    const { send } = renderLive(<KernelGrid />);
    history(send);
    await userEvent.click(cell(17)); // standby: no adapter, no versions to read
    expect(screen.queryByTestId('kernel-versions')).not.toBeInTheDocument();
    await userEvent.click(cell(5));
    const rows = await screen.findAllByTestId('kernel-version');
    expect(rows[0]).toHaveAttribute('aria-current', 'true');
    expect(screen.queryByRole('button', { name: /Roll back/ })).not.toBeInTheDocument(); // not signed in as staff

    serving = '.5.v1';
    send('kernels', {
      kind: 'kernel.rolled_back',
      index: 5,
      status: 'active',
      anchor_drift: 0.0042,
      adapter_bytes: 1024,
      adapter_version: '.5.v1',
    });
    await waitFor(() =>
      expect(screen.getAllByTestId('kernel-version')[1]).toHaveAttribute('aria-current', 'true'),
    );
    expect(screen.getByTestId('kernel-details')).toHaveTextContent('0.0042');
    expect(requests).toHaveLength(2);
  });

  it("moves a kernel's drift when federation moves its anchor", () => {
    const before = kernels();
    const moved = applyKernelEvent(before, {
      kind: 'kernel.anchor_moved',
      index: 5,
      anchor_drift: 0.125,
      anchor_version: 7,
      reason: 'following central',
    });
    expect(moved?.find((k) => k.index === 5)?.anchor_drift).toBe(0.125);
    expect(moved?.find((k) => k.index === 17)).toBe(before.find((k) => k.index === 17));
  });

  it('sizes cells below half the nearest distance', () => {
    const ks = kernels();
    const r = cellRadius(ks);
    expect(r).toBeGreaterThan(0.01);
    expect(r).toBeLessThan((2 * Math.PI * 0.3) / 30 / 2);
  });
});
