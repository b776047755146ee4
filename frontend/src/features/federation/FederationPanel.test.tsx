import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { ADMIN, ANALYST, json, stubServer } from '../../test/http';
import { renderLive } from '../dashboard/testing';
import { page, renderSignedIn } from '../jobs/testing';
import { FederationPanel } from './FederationPanel';
import { NODES_PATH, ROUNDS_PATH, packetsPath, revokePath, tokenPath } from './federationApi';
import { centralSummary, lag, sizeText, totals } from './fedFormat';
import type { CentralLink, CentralState, FederationHistory, FederationNode } from './types';

const secondsAgo = (s: number) => new Date(Date.now() - s * 1000).toISOString();
const inHours = (h: number) => new Date(Date.now() + h * 3600_000).toISOString();

function node(id: number, overrides: Partial<FederationNode> = {}): FederationNode {
  return {
    id,
    name: `edge-${id}`,
    size: 'minimal',
    uuid: `0000000${id}-aaaa-4bbb-8ccc-dddddddddddd`,
    status: 'online',
    joined_at: secondsAgo(3600),
    last_seen: secondsAgo(12),
    lag_s: 0.4,
    applied_version: 12,
    packets_in: 40,
    packets_rejected: 2,
    duplicates: 1,
    per_minute: { in: 12, out: 30, rejected: 0 },
    join_expires_at: null,
    created_at: secondsAgo(7200),
    ...overrides,
  };
}

function history(overrides: Partial<FederationHistory> = {}): FederationHistory {
  return {
    kind: 'federation.history',
    role: 'central',
    size: 'full',
    kernels: 240,
    node: { id: 'ffffffff-1111-4222-8333-444444444444', name: 'central-1' },
    central: null,
    nodes: [],
    ...overrides,
  };
}

function link(overrides: Partial<CentralLink> = {}): CentralLink {
  return {
    url: 'http://127.0.0.1:9300',
    state: 'connected',
    since: secondsAgo(600),
    last_error: '',
    outbox: 3,
    rejected: 0,
    lag_s: 1.5,
    applied_version: 12,
    ...overrides,
  };
}

// Made again before each test: their times are relative to when the test starts.
const makeEdges = () => [
  node(1, { name: 'edge-a', per_minute: { in: 12, out: 30, rejected: 1 }, lag_s: 75 }),
  node(2, {
    name: 'edge-b',
    size: 'medium',
    status: 'pending',
    joined_at: null,
    last_seen: null,
    lag_s: null,
    applied_version: null,
    packets_in: 0,
    packets_rejected: 0,
    duplicates: 0,
    per_minute: { in: 0, out: 0, rejected: 0 },
    join_expires_at: inHours(24),
  }),
  node(3, { name: 'edge-c', status: 'offline', last_seen: secondsAgo(600) }),
  node(4, { name: 'edge-d', status: 'revoked' }),
];
let EDGES = makeEdges();

const rowOf = (name: string) =>
  screen.getAllByTestId('federation-node').find((row) => within(row).queryByRole('rowheader', { name }))!;

/** The server's routes, and no Flower round yet: a central's panel reads the rounds when it opens. */
function serve(routes: Parameters<typeof stubServer>[0]) {
  return stubServer({ [`GET ${ROUNDS_PATH}`]: () => json(200, page([])), ...routes });
}

/** The requests made, but the panel's own read of the rounds. */
const asked = (requests: ReturnType<typeof stubServer>) => requests.filter((r) => r.path !== ROUNDS_PATH);

beforeEach(() => {
  EDGES = makeEdges();
  document.cookie = 'csrftoken=csrf-from-cookie; path=/';
  // A test that stubs no server of its own: the rounds are still being read when it ends.
  stubServer({ [`GET ${ROUNDS_PATH}`]: () => new Promise<Response>(() => {}) });
});

describe('FederationPanel', () => {
  it('says honestly that there is no federation, and how to set one up', () => {
    const { send } = renderLive(<FederationPanel />);
    expect(screen.getByText('Loading the federation…')).toBeInTheDocument();
    send('federation', history({ role: 'alone', size: 'full', kernels: 240 }));
    const empty = screen.getByRole('status');
    expect(empty).toHaveTextContent(/^No federation: this node runs on its own\./);
    expect(empty).toHaveTextContent('QIG_FEDERATION=central to accept edges');
    expect(empty).toHaveTextContent('qig federation join URL TOKEN');
    expect(screen.queryByRole('table')).not.toBeInTheDocument();
  });

  it('takes an older message without a role as no federation when it lists no node', () => {
    const { send } = renderLive(<FederationPanel />);
    send('federation', { kind: 'federation.history', nodes: [] });
    expect(screen.getByText(/No federation: this node runs on its own/)).toBeInTheDocument();
    send('federation', { kind: 'something.else' });
    expect(screen.getByText(/No federation/)).toBeInTheDocument();
  });

  it('lists a central’s nodes with status, lag, version and traffic; totals in the tooltip', () => {
    const { publish } = renderSignedIn(ANALYST, <FederationPanel />);
    publish('federation', history({ nodes: EDGES }));

    expect(screen.getByTestId('federation-summary')).toHaveTextContent('Central · 4 nodes · 1 online');
    expect(screen.getByText('This node: central-1 · full (240 kernels)')).toBeInTheDocument();
    const table = screen.getByRole('table', { name: /Edge nodes/ });
    expect(
      within(table)
        .getAllByRole('columnheader')
        .map((th) => th.textContent),
    ).toEqual([
      'Node',
      'Size',
      'Status',
      'Last seen',
      'Lag',
      'Version applied',
      'In/min',
      'Out/min',
      'Rejected/min',
      'Actions',
    ]);

    const a = rowOf('edge-a');
    const cells = within(a)
      .getAllByRole('cell')
      .map((td) => td.textContent);
    expect(cells.slice(0, 8)).toEqual(['minimal', 'online', '12 s ago', '1 min 15 s', '12', '12', '30', '1']);
    expect(within(a).getByTestId('node-status')).toHaveClass('badge', 'fed-status--online');
    expect(a).toHaveAttribute('title', '40 packets in · 2 rejected · 1 duplicate');

    const b = rowOf('edge-b');
    expect(within(b).getByTestId('node-status')).toHaveTextContent('pending');
    expect(
      within(b)
        .getAllByRole('cell')
        .map((td) => td.textContent)
        .slice(0, 5),
    ).toEqual(['medium', 'pending', '—', '—', '—']);
    expect(within(rowOf('edge-c')).getByTestId('node-status')).toHaveTextContent('offline');
    expect(within(rowOf('edge-d')).getByTestId('node-status')).toHaveClass('fed-status--revoked');
  });

  it('offers no controls to a user who is not staff', () => {
    const { publish } = renderSignedIn(ANALYST, <FederationPanel />);
    publish('federation', history({ nodes: EDGES }));
    expect(screen.getByText('Only admins can add, revoke or re-invite nodes.')).toBeInTheDocument();
    expect(screen.queryByRole('form', { name: 'Add an edge node' })).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Add node' })).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: /^Revoke/ })).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: /^New token/ })).not.toBeInTheDocument();
    // Everyone may look at a node's packets.
    expect(screen.getAllByRole('button', { name: /^Details of/ })).toHaveLength(4);
  });

  it('offers Revoke on every node not revoked and New token only on pending ones, to staff', () => {
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    publish('federation', history({ nodes: EDGES }));
    expect(
      screen.getAllByRole('button', { name: /^Revoke/ }).map((b) => b.getAttribute('aria-label')),
    ).toEqual(['Revoke edge-a', 'Revoke edge-b', 'Revoke edge-c']);
    expect(
      screen.getAllByRole('button', { name: /^New token/ }).map((b) => b.getAttribute('aria-label')),
    ).toEqual(['New token for edge-b']);
  });

  it('adds a node and shows its join token once, then forgets it when dismissed', async () => {
    const user = userEvent.setup();
    const created = {
      ...node(7, {
        name: 'edge-new',
        size: 'medium',
        status: 'pending',
        joined_at: null,
        last_seen: null,
        lag_s: null,
        packets_in: 0,
        packets_rejected: 0,
        duplicates: 0,
        join_expires_at: inHours(24),
      }),
      join_token: 'tok-SECRET-123',
      join_command: 'qig federation join http://host:9200 tok-SECRET-123',
    };
    const requests = serve({ [`POST ${NODES_PATH}`]: () => json(201, created) });
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    publish('federation', history({ nodes: [] }));
    expect(screen.getByText(/^No edge node yet\. Add one to get its join token/)).toBeInTheDocument();

    await user.type(screen.getByLabelText('Node name'), '  edge-new ');
    await user.selectOptions(screen.getByLabelText('Size'), 'medium');
    await user.click(screen.getByRole('button', { name: 'Add node' }));

    const box = await screen.findByRole('region', { name: 'Join token for edge-new' });
    expect(asked(requests)).toHaveLength(1);
    expect(asked(requests)[0]!.body).toEqual({ name: 'edge-new', size: 'medium' });
    expect(asked(requests)[0]!.headers['X-CSRFToken']).toBe('csrf-from-cookie');
    expect(box).toHaveTextContent('Shown once — copy it now.');
    expect(within(box).getByTestId('join-command')).toHaveTextContent(
      'qig federation join http://host:9200 tok-SECRET-123',
    );
    expect(within(box).getByTestId('join-token')).toHaveTextContent('tok-SECRET-123');
    expect(screen.getByLabelText('Node name')).toHaveValue('');

    // The row is there at once, before the topic says so.
    expect(within(rowOf('edge-new')).getByTestId('node-status')).toHaveTextContent('pending');
    expect(screen.getByTestId('federation-summary')).toHaveTextContent('Central · 1 node · 0 online');

    await user.click(within(box).getByRole('button', { name: 'Copy join command' }));
    expect(await navigator.clipboard.readText()).toBe('qig federation join http://host:9200 tok-SECRET-123');
    expect(within(box).getByRole('status')).toHaveTextContent('Join command copied.');

    // The topic's next message does not bring the token back; dismissing forgets it.
    publish('federation', history({ nodes: [node(7, { name: 'edge-new', status: 'pending' })] }));
    expect(screen.getByRole('region', { name: 'Join token for edge-new' })).toBeInTheDocument();
    await user.click(within(box).getByRole('button', { name: 'Dismiss' }));
    expect(screen.queryByRole('region', { name: /Join token/ })).not.toBeInTheDocument();
    expect(screen.queryByText(/tok-SECRET-123/)).not.toBeInTheDocument();
    expect(rowOf('edge-new')).toBeInTheDocument();
  });

  it('shows the server’s word on a bad or taken name beside the field', async () => {
    serve({
      [`POST ${NODES_PATH}`]: () => json(400, { name: ['A node with this name already exists.'] }),
    });
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    publish('federation', history({ nodes: EDGES }));
    await userEvent.type(screen.getByLabelText('Node name'), 'edge-a');
    await userEvent.click(screen.getByRole('button', { name: 'Add node' }));
    expect(await screen.findByRole('alert')).toHaveTextContent('A node with this name already exists.');
    expect(screen.getByLabelText('Node name')).toHaveAttribute('aria-invalid', 'true');
    expect(screen.getByLabelText('Node name')).toHaveValue('edge-a');
    expect(screen.queryByRole('region', { name: /Join token/ })).not.toBeInTheDocument();
  });

  it('asks for a name before asking the server', async () => {
    const requests = serve({});
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    publish('federation', history());
    await userEvent.click(screen.getByRole('button', { name: 'Add node' }));
    expect(screen.getByRole('alert')).toHaveTextContent('Give the node a name.');
    expect(asked(requests)).toHaveLength(0);
  });

  it('says a 403 when a write is refused', async () => {
    serve({
      [`POST ${NODES_PATH}`]: () =>
        json(403, { detail: 'You do not have permission to perform this action.' }),
    });
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    publish('federation', history());
    await userEvent.type(screen.getByLabelText('Node name'), 'edge-x');
    await userEvent.click(screen.getByRole('button', { name: 'Add node' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Could not add the node: You do not have permission to perform this action.',
    );
  });

  it('revokes a node after confirming, with the CSRF header, and shows it revoked', async () => {
    const requests = serve({
      [`POST ${revokePath(1)}`]: () => json(200, { ...EDGES[0], status: 'revoked' }),
    });
    const confirm = vi.spyOn(window, 'confirm').mockReturnValueOnce(false).mockReturnValueOnce(true);
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    publish('federation', history({ nodes: EDGES }));

    await userEvent.click(screen.getByRole('button', { name: 'Revoke edge-a' }));
    expect(confirm).toHaveBeenCalledTimes(1);
    expect(confirm.mock.calls[0]![0]).toMatch(/^Revoke edge-a\?/);
    expect(asked(requests)).toHaveLength(0);

    await userEvent.click(screen.getByRole('button', { name: 'Revoke edge-a' }));
    await waitFor(() =>
      expect(within(rowOf('edge-a')).getByTestId('node-status')).toHaveTextContent('revoked'),
    );
    expect(asked(requests)).toHaveLength(1);
    expect(asked(requests)[0]).toMatchObject({ method: 'POST', path: '/api/v1/nodes/1/revoke/' });
    expect(asked(requests)[0]!.headers['X-CSRFToken']).toBe('csrf-from-cookie');
    expect(screen.queryByRole('button', { name: 'Revoke edge-a' })).not.toBeInTheDocument();
    expect(screen.getByTestId('federation-summary')).toHaveTextContent('Central · 4 nodes · 0 online');
  });

  it('issues a new token for a pending node, and says why when the server refuses', async () => {
    let tries = 0;
    const requests = serve({
      [`POST ${tokenPath(2)}`]: () =>
        ++tries === 1
          ? json(200, {
              join_token: 'tok-NEW',
              join_command: 'qig federation join http://host:9200 tok-NEW',
              join_expires_at: inHours(24),
            })
          : json(409, { detail: 'edge-b has already joined' }),
    });
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    publish('federation', history({ nodes: EDGES }));

    await userEvent.click(screen.getByRole('button', { name: 'New token for edge-b' }));
    const box = await screen.findByRole('region', { name: 'Join token for edge-b' });
    expect(within(box).getByTestId('join-command')).toHaveTextContent(
      'qig federation join http://host:9200 tok-NEW',
    );
    expect(box).toHaveTextContent('valid until');
    expect(asked(requests)[0]!.headers['X-CSRFToken']).toBe('csrf-from-cookie');

    await userEvent.click(screen.getByRole('button', { name: 'New token for edge-b' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Could not issue a new token for edge-b: edge-b has already joined',
    );
  });

  it('opens a node’s recent packets and rejections, and reads them again when its totals move', async () => {
    let reads = 0;
    const requests = serve({
      [`GET ${packetsPath(1)}`]: () =>
        json(
          200,
          ++reads === 1
            ? {
                packets: [
                  {
                    id: '9f8e7d6c-0000-4000-8000-000000000001',
                    received_at: secondsAgo(5),
                    kernels: [0, 57],
                    bytes: 812,
                    duplicate: false,
                  },
                  {
                    id: '9f8e7d6c-0000-4000-8000-000000000002',
                    received_at: secondsAgo(65),
                    kernels: Array.from({ length: 10 }, (_, i) => i),
                    bytes: 4096,
                    duplicate: true,
                  },
                ],
                rejections: [],
              }
            : {
                packets: [],
                rejections: [{ at: secondsAgo(2), reason: 'bad signature', bytes: 900 }],
              },
        ),
      [`GET ${packetsPath(2)}`]: () => json(200, { packets: [], rejections: [] }),
    });
    const { publish } = renderSignedIn(ANALYST, <FederationPanel />);
    publish('federation', history({ nodes: EDGES }));

    // A click on the row (not only on its button) opens it.
    await userEvent.click(within(rowOf('edge-a')).getByRole('rowheader'));
    const details = await screen.findByRole('region', { name: 'edge-a: packets and rejections' });
    expect(screen.getByRole('button', { name: 'Details of edge-a' })).toHaveAttribute(
      'aria-expanded',
      'true',
    );
    const packets = await within(details).findAllByTestId('node-packet');
    expect(packets).toHaveLength(2);
    expect(packets[0]).toHaveTextContent('9f8e7d6c');
    expect(packets[0]).toHaveTextContent('0, 57');
    expect(packets[0]).toHaveTextContent('812 B');
    expect(packets[0]).toHaveTextContent('no');
    expect(packets[1]).toHaveTextContent('0, 1, 2, 3, 4, 5, 6, 7 … (+2)');
    expect(packets[1]).toHaveTextContent('4.0 KiB');
    expect(packets[1]).toHaveTextContent('yes');
    expect(details).toHaveTextContent('No packet from edge-a was rejected.');
    expect(details).toHaveTextContent('40 packets in · 2 rejected · 1 duplicate');

    publish('federation', history({ nodes: [{ ...EDGES[0]!, packets_rejected: 3 }, ...EDGES.slice(1)] }));
    expect(await within(details).findByTestId('node-rejection')).toHaveTextContent('bad signature');
    expect(details).toHaveTextContent('No packet received from edge-a yet.');
    expect(requests.filter((r) => r.path === packetsPath(1))).toHaveLength(2);

    // Another node's details replace these; Close shuts them.
    await userEvent.click(screen.getByRole('button', { name: 'Details of edge-b' }));
    const other = await screen.findByRole('region', { name: 'edge-b: packets and rejections' });
    expect(await within(other).findByText('No packet received from edge-b yet.')).toBeInTheDocument();
    expect(screen.queryByRole('region', { name: /edge-a: packets/ })).not.toBeInTheDocument();
    await userEvent.click(within(other).getByRole('button', { name: 'Close details' }));
    expect(screen.queryByTestId('node-details')).not.toBeInTheDocument();
  });

  it('says when the packets cannot be read', async () => {
    serve({ [`GET ${packetsPath(1)}`]: () => json(500, { detail: 'database is locked' }) });
    const { publish } = renderSignedIn(ANALYST, <FederationPanel />);
    publish('federation', history({ nodes: EDGES }));
    await userEvent.click(screen.getByRole('button', { name: 'Details of edge-a' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Could not read the packets: database is locked',
    );
  });

  it('shows an edge’s link to its central', () => {
    const { send } = renderLive(<FederationPanel />);
    send(
      'federation',
      history({
        role: 'edge',
        size: 'minimal',
        kernels: 3,
        node: { id: 'x', name: 'edge-a' },
        central: link(),
      }),
    );
    expect(screen.getByTestId('federation-summary')).toHaveTextContent('Edge · minimal (3 kernels)');
    expect(screen.getByText('This node: edge-a')).toBeInTheDocument();
    expect(screen.getByTestId('central-url')).toHaveTextContent('http://127.0.0.1:9300');
    expect(screen.getByTestId('central-state')).toHaveTextContent('connected');
    expect(screen.getByTestId('central-state')).toHaveClass('badge', 'fed-state--connected');
    expect(screen.getByTestId('central-since')).toHaveTextContent('10 min ago');
    expect(screen.getByTestId('central-outbox')).toHaveTextContent('3');
    expect(screen.getByTestId('central-rejected')).toHaveTextContent('0');
    expect(screen.getByTestId('central-lag')).toHaveTextContent('2 s');
    expect(screen.getByTestId('central-version')).toHaveTextContent('12');
    expect(screen.queryByTestId('central-error')).not.toBeInTheDocument();
    expect(screen.queryByTestId('central-hint')).not.toBeInTheDocument();
    expect(screen.queryByRole('table')).not.toBeInTheDocument();
  });

  it.each<[CentralState, string, boolean]>([
    ['not joined', 'fed-state--not-joined', false],
    ['connecting', 'fed-state--connecting', false],
    ['connected', 'fed-state--connected', false],
    ['disconnected', 'fed-state--disconnected', true],
    ['revoked', 'fed-state--revoked', true],
  ])('shows the edge state %s with its colour', (state, className, warning) => {
    const { send } = renderLive(<FederationPanel />);
    const lastError = warning ? 'connection refused' : '';
    send('federation', history({ role: 'edge', central: link({ state, last_error: lastError }) }));
    const badge = screen.getByTestId('central-state');
    expect(badge).toHaveTextContent(state);
    expect(badge).toHaveClass(className);
    if (warning) {
      expect(screen.getByTestId('central-error')).toHaveTextContent('Last error: connection refused');
      expect(screen.getByTestId('central-error')).toHaveClass('fed__error');
      expect(screen.getByTestId('central-hint')).toHaveClass('fed-warn');
    } else {
      expect(screen.queryByTestId('central-error')).not.toBeInTheDocument();
    }
  });

  it('shows a dash for what an edge does not know yet', () => {
    const { send } = renderLive(<FederationPanel />);
    send(
      'federation',
      history({
        role: 'edge',
        central: link({ state: 'not joined', url: '', since: null, lag_s: null, outbox: 0, rejected: 0 }),
      }),
    );
    expect(screen.getByTestId('central-url')).toHaveTextContent('—');
    expect(screen.getByTestId('central-since')).toHaveTextContent('—');
    expect(screen.getByTestId('central-lag')).toHaveTextContent('—');
    expect(screen.getByTestId('central-hint')).toHaveTextContent('Not joined yet: run qig federation join');

    send('federation', history({ role: 'edge', size: 'minimal', kernels: 3, central: null }));
    expect(screen.getByTestId('central-state')).toHaveTextContent('not joined');
    expect(screen.getByTestId('central-outbox')).toHaveTextContent('—');
    expect(screen.getByTestId('central-version')).toHaveTextContent('—');
  });

  it('words the summary, lag, totals and size', () => {
    expect(centralSummary([{ status: 'online' }])).toBe('Central · 1 node · 1 online');
    expect(centralSummary([])).toBe('Central · 0 nodes · 0 online');
    expect(lag(0)).toBe('up to date');
    expect(lag(null)).toBe('—');
    expect(lag(3725)).toBe('1 h 02 min');
    expect(totals({ packets_in: 1, packets_rejected: 0, duplicates: 1 })).toBe(
      '1 packet in · 0 rejected · 1 duplicate',
    );
    expect(sizeText('medium', 12)).toBe('medium (12 kernels)');
    expect(sizeText(null, null)).toBe('');
  });
});
