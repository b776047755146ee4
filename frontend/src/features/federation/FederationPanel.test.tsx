import { screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { renderLive } from '../dashboard/testing';
import { FederationPanel } from './FederationPanel';

describe('FederationPanel', () => {
  it('says honestly that there is no federation when there are no nodes', () => {
    const { send } = renderLive(<FederationPanel />);
    expect(screen.getByText('Loading the federation nodes…')).toBeInTheDocument();
    send('federation', { kind: 'federation.history', nodes: [] });
    expect(screen.getByText(/No federation: this node runs on its own/)).toBeInTheDocument();
  });

  it('lists nodes with status, lag and whether they sync', () => {
    const { send } = renderLive(<FederationPanel />);
    send('federation', {
      kind: 'federation.history',
      nodes: [
        {
          id: 1,
          name: 'edge-1',
          url: 'https://edge-1',
          status: 'seen',
          last_seen: new Date().toISOString(),
          lag_s: 75,
          syncing: false,
        },
      ],
    });
    const row = screen.getByRole('row', { name: /edge-1/ });
    expect(row).toHaveTextContent('seen');
    expect(row).toHaveTextContent('1 min 15 s');
    expect(row).toHaveTextContent('no');
  });
});
