import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { ADMIN, ANALYST, json, stubServer, type Route } from '../../test/http';
import { page, renderSignedIn } from '../jobs/testing';
import { FederationPanel } from './FederationPanel';
import { BUNDLES_PATH, ROLLBACK_PATH, ROUNDS_PATH } from './federationApi';
import { bundleVersion, edgeBundleState, kernelList, millis, snapshotText } from './fedFormat';
import { mergeRounds } from './FlowerRounds';
import { parseKernels } from './RoundForm';
import type { BundleRow, BundlesView, FederationHistory, FlowerRound, SnapshotImport } from './types';

const secondsAgo = (s: number) => new Date(Date.now() - s * 1000).toISOString();

function bundle(id: number, overrides: Partial<BundleRow> = {}): BundleRow {
  return {
    id,
    version: id,
    status: 'published',
    reason: '',
    source: 'learnings',
    kernels: [3, 5],
    jobs: [40 + id],
    learnings: 4,
    bytes: 3 * 1024 * 1024,
    created_at: secondsAgo(600),
    published_at: secondsAgo(300),
    applied_at: null,
    apply_ms: null,
    ...overrides,
  };
}

function central(
  bundles: BundlesView | undefined,
  overrides: Partial<FederationHistory> = {},
): FederationHistory {
  return {
    kind: 'federation.history',
    role: 'central',
    size: 'full',
    kernels: 240,
    node: { id: null, name: 'central-1' },
    central: null,
    nodes: [],
    snapshot: null,
    bundles,
    ...overrides,
  };
}

function edge(
  bundles: BundlesView | undefined,
  overrides: Partial<FederationHistory> = {},
): FederationHistory {
  return central(bundles, {
    role: 'edge',
    size: 'minimal',
    kernels: 3,
    node: { id: 'x', name: 'edge-a' },
    central: {
      url: 'http://127.0.0.1:9300',
      state: 'connected',
      since: secondsAgo(600),
      last_error: '',
      outbox: 0,
      rejected: 0,
      lag_s: 0,
      applied_version: 12,
    },
    ...overrides,
  });
}

const CENTRAL_BUNDLES: BundlesView = {
  bundles: [
    bundle(3, {
      version: null,
      status: 'training',
      published_at: null,
      bytes: 0,
      kernels: [7],
      jobs: [51],
      learnings: 3,
    }),
    bundle(2, {
      version: null,
      status: 'not promoted',
      reason: 'nothing promoted (job 44: held-out loss did not improve)',
      published_at: null,
      bytes: 0,
    }),
    bundle(1, { source: 'admin', kernels: Array.from({ length: 10 }, (_, i) => i), learnings: 0 }),
  ],
  learnings: [
    { kernel: 3, node: 'edge-a', received: 4, trained: 4 },
    { kernel: 3, node: 'edge-b', received: 2, trained: 0 },
    { kernel: 7, node: 'edge-a', received: 3, trained: 3 },
  ],
  edges: [
    { node: 'edge-a', version: 1, status: 'applied' },
    { node: 'edge-b', version: 0, status: 'refused bundle 1: bad signature' },
    { node: 'edge-c', version: 0, status: '' },
  ],
};

function round(id: number, overrides: Partial<FlowerRound> = {}): FlowerRound {
  return {
    id,
    kernels: [3],
    min_edges: 2,
    rounds: 2,
    status: 'running',
    run_id: '77',
    history: [],
    result: {},
    error: '',
    created_at: secondsAgo(120),
    started_at: secondsAgo(110),
    finished_at: null,
    ...overrides,
  };
}

/** The server's routes; a central's panel reads the rounds when it opens (none by default). */
function serve(routes: Record<string, Route> = {}) {
  return stubServer({ [`GET ${ROUNDS_PATH}`]: () => json(200, page([])), ...routes });
}

const rows = (testId: string) => screen.getAllByTestId(testId);
const cells = (row: HTMLElement) =>
  [...row.querySelectorAll('th, td')].map((cell) => cell.textContent?.replace(/\s+/g, ' ').trim());

beforeEach(() => {
  document.cookie = 'csrftoken=csrf-from-cookie; path=/';
});

describe('Federation panel: central’s learnings and update bundles', () => {
  it('lists the learnings per kernel and node, the bundles, and which edge runs which', async () => {
    serve();
    const { publish } = renderSignedIn(ANALYST, <FederationPanel />);
    publish('federation', central(CENTRAL_BUNDLES));

    const learnings = screen.getByRole('region', { name: 'Learnings' });
    expect(
      within(learnings)
        .getAllByRole('columnheader')
        .map((th) => th.textContent),
    ).toEqual(['Kernel', 'Node', 'Received', 'Trained']);
    expect(rows('learning-row').map(cells)).toEqual([
      ['3', 'edge-a', '4', '4'],
      ['3', 'edge-b', '2', '0'],
      ['7', 'edge-a', '3', '3'],
    ]);

    const bundles = screen.getByRole('region', { name: 'Update bundles' });
    expect(
      Array.from(
        within(bundles).getAllByRole('table')[0]!.querySelectorAll('thead th'),
        (th) => th.textContent,
      ),
    ).toEqual(['Version', 'Status', 'Source', 'Kernels', 'Size', 'Learnings', 'Published']);
    const [training, notPromoted, published] = rows('bundle-row');
    expect(cells(training!)).toEqual(['—', 'training', 'learnings', '7', '—', '3', '—']);
    expect(within(training!).getByTestId('bundle-status')).toHaveClass('badge', 'fed-bundle--training');
    expect(within(notPromoted!).getByTestId('bundle-status')).toHaveClass('fed-bundle--not-promoted');
    expect(within(notPromoted!).getByTestId('bundle-reason')).toHaveTextContent(
      'nothing promoted (job 44: held-out loss did not improve)',
    );
    expect(within(notPromoted!).getByTestId('bundle-reason')).toHaveClass('fed-warn');
    expect(cells(published!)).toEqual([
      '1',
      'published',
      'admin',
      '0, 1, 2, 3, 4, 5, 6, 7 … (+2)',
      '3.0 MiB',
      '0',
      '5 min ago',
    ]);

    const edges = rows('edge-bundle');
    expect(edges.map(cells)).toEqual([
      ['edge-a', '1', 'applied'],
      ['edge-b', '—', '⚠ refused bundle 1: bad signature'],
      ['edge-c', '—', 'not reported yet'],
    ]);
    expect(edges[1]!.querySelector('td:last-child')).toHaveClass('fed-warn');
    expect(edges[0]!.querySelector('td:last-child')).not.toHaveClass('fed-warn');
    // An edge's name is a cell there, not a row header: the nodes table has its row.
    expect(within(edges[0]!).queryByRole('rowheader')).not.toBeInTheDocument();

    expect(screen.getByText('Only admins can train or publish bundles.')).toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Train on new learnings' })).not.toBeInTheDocument();
    expect(screen.queryByRole('button', { name: 'Publish served adapters' })).not.toBeInTheDocument();
    await screen.findByText(/^No Flower round yet\. An admin starts them here\./);
  });

  it('explains what is missing when there are no learnings, bundles or edges yet', async () => {
    serve();
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    // An older server sends no bundles at all: the same empty states.
    publish('federation', central(undefined));
    expect(screen.getByRole('region', { name: 'Learnings' })).toHaveTextContent(
      'No learnings yet: edges send corrections and approved answers their users give (value ≥ 0.7) after each learning cycle.',
    );
    const bundles = screen.getByRole('region', { name: 'Update bundles' });
    expect(bundles).toHaveTextContent(/No update bundle yet: central trains one when enough new learnings/);
    expect(bundles).toHaveTextContent('No edge has joined yet: each joined edge reports the bundle it runs.');
    expect(within(bundles).queryByRole('table')).not.toBeInTheDocument();
    expect(screen.queryByRole('table', { name: /Learnings received/ })).not.toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Train on new learnings' })).toBeEnabled();
    expect(screen.getByRole('button', { name: 'Publish served adapters' })).toBeEnabled();
    await screen.findByText(/^No Flower round yet\. Central runs them with QIG_FLOWER=1/);
  });

  it('trains on new learnings for staff, then shows the server’s 409 when there is nothing to train', async () => {
    const user = userEvent.setup();
    let tries = 0;
    const queued = bundle(9, {
      version: null,
      status: 'training',
      kernels: [3, 7],
      jobs: [60, 61],
      learnings: 5,
      bytes: 0,
      published_at: null,
    });
    const requests = serve({
      [`POST ${BUNDLES_PATH}`]: () =>
        ++tries === 1
          ? json(202, queued)
          : json(409, { detail: 'no new learnings for any kernel: nothing to train' }),
      [`GET ${BUNDLES_PATH}`]: () => json(200, { ...CENTRAL_BUNDLES, bundles: [queued] }),
    });
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    publish('federation', central({ bundles: [], learnings: [], edges: [] }));

    await user.click(screen.getByRole('button', { name: 'Train on new learnings' }));
    expect(await screen.findByTestId('bundle-action-done')).toHaveTextContent(
      'Training kernels 3, 7 on 5 new learnings: the kernels that pass the promotion gate are published as one bundle.',
    );
    const post = requests.find((r) => r.method === 'POST')!;
    expect(post).toMatchObject({ path: BUNDLES_PATH, body: { train: true } });
    expect(post.headers['X-CSRFToken']).toBe('csrf-from-cookie');
    // The row is there at once; the bundles are read again (learnings, edges with it).
    expect(within(rows('bundle-row')[0]!).getByTestId('bundle-status')).toHaveTextContent('training');
    await waitFor(() => expect(rows('learning-row')).toHaveLength(3));
    expect(rows('bundle-row')).toHaveLength(1);

    await user.click(screen.getByRole('button', { name: 'Train on new learnings' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Could not train: no new learnings for any kernel: nothing to train',
    );
    expect(screen.queryByTestId('bundle-action-done')).not.toBeInTheDocument();
  });

  it('publishes the served adapters after a confirmation, and shows the 409 when there is none', async () => {
    const user = userEvent.setup();
    let tries = 0;
    const requests = serve({
      [`POST ${BUNDLES_PATH}`]: () =>
        ++tries === 1
          ? json(201, bundle(4, { source: 'admin', kernels: [3] }))
          : json(409, { detail: 'none of kernels [] has a trained adapter' }),
      [`GET ${BUNDLES_PATH}`]: () => json(500, { detail: 'database is locked' }),
    });
    const confirm = vi
      .spyOn(window, 'confirm')
      .mockReturnValueOnce(false)
      .mockReturnValueOnce(true)
      .mockReturnValueOnce(true);
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    publish('federation', central({ bundles: [], learnings: [], edges: [] }));

    await user.click(screen.getByRole('button', { name: 'Publish served adapters' }));
    expect(confirm.mock.calls[0]![0]).toMatch(/^Publish the adapters this central serves as a new bundle\?/);
    expect(requests.filter((r) => r.method === 'POST')).toHaveLength(0);

    await user.click(screen.getByRole('button', { name: 'Publish served adapters' }));
    expect(await screen.findByTestId('bundle-action-done')).toHaveTextContent(
      'Published bundle 4 (kernel 3): the edges holding them fetch it now.',
    );
    expect(requests.find((r) => r.method === 'POST')!.body).toEqual({ train: false });
    // The row stays even though reading the bundles again failed.
    expect(cells(rows('bundle-row')[0]!).slice(0, 3)).toEqual(['4', 'published', 'admin']);

    await user.click(screen.getByRole('button', { name: 'Publish served adapters' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Could not publish: none of kernels [] has a trained adapter',
    );
  });

  it('shows the snapshot a node imported, on central and alone', async () => {
    serve();
    const snapshot: SnapshotImport = {
      version: '20261207T174500Z',
      imported_at: secondsAgo(7200),
      patterns: 12,
      jobs: 3,
    };
    const { publish } = renderSignedIn(ANALYST, <FederationPanel />);
    publish('federation', central(undefined, { snapshot }));
    expect(screen.getByTestId('federation-snapshot')).toHaveTextContent(
      'Snapshot 20261207T174500Z imported 2 h ago: 12 patterns, 3 jobs queued.',
    );
    publish(
      'federation',
      central(undefined, { role: 'alone', snapshot: { ...snapshot, patterns: 1, jobs: 0 } }),
    );
    expect(screen.getByTestId('federation-snapshot')).toHaveTextContent(
      'Snapshot 20261207T174500Z imported 2 h ago: 1 pattern, 0 jobs queued.',
    );
    publish('federation', central(undefined, { role: 'alone', snapshot: null }));
    expect(screen.queryByTestId('federation-snapshot')).not.toBeInTheDocument();
    await waitFor(() => expect(screen.queryByText('Loading the rounds…')).not.toBeInTheDocument());
  });
});

describe('Federation panel: an edge’s update bundle', () => {
  const EDGE_BUNDLES: BundlesView = {
    bundles: [
      bundle(8, {
        status: 'refused',
        reason: 'another trunk: the bundle fits sha256:aaaa, this edge runs sha256:bbbb',
        bytes: 0,
        published_at: null,
      }),
      bundle(7, { status: 'applied', applied_at: secondsAgo(180), apply_ms: 412.6, kernels: [0, 1, 2] }),
      bundle(6, { status: 'replaced', applied_at: secondsAgo(4 * 3600), apply_ms: 1250 }),
      bundle(5, { status: 'refused', reason: 'bad signature', bytes: 0 }),
    ],
  };

  it('shows the bundle it runs, the newer one it refused with its reason, and the recent ones', () => {
    const { publish } = renderSignedIn(ANALYST, <FederationPanel />);
    publish('federation', edge(EDGE_BUNDLES));

    const section = screen.getByRole('region', { name: 'Update bundle' });
    expect(within(section).getByTestId('edge-bundle-version')).toHaveTextContent('7');
    expect(within(section).getByTestId('edge-bundle-applied')).toHaveTextContent('3 min ago');
    expect(within(section).getByTestId('edge-bundle-apply-ms')).toHaveTextContent('413 ms');
    expect(within(section).getByTestId('edge-bundle-running')).toHaveTextContent('Kernels0, 1, 2');
    // Only the refusal newer than what it runs is a warning; the old one stays in the table.
    const refused = within(section).getAllByTestId('edge-bundle-refused');
    expect(refused.map((p) => p.textContent)).toEqual([
      'Refused bundle 8: another trunk: the bundle fits sha256:aaaa, this edge runs sha256:bbbb',
    ]);
    expect(refused[0]).toHaveClass('fed__error');
    expect(rows('bundle-row').map((row) => cells(row).slice(0, 2))).toEqual([
      ['8', 'refused another trunk: the bundle fits sha256:aaaa, this edge runs sha256:bbbb'],
      ['7', 'applied'],
      ['6', 'replaced'],
      ['5', 'refused bad signature'],
    ]);
    expect(cells(rows('bundle-row')[2]!).slice(4)).toEqual(['4 h ago', '1.25 s']);
    expect(within(rows('bundle-row')[0]!).getByTestId('bundle-status')).toHaveClass('fed-bundle--refused');
    // Not staff: no rollback.
    expect(screen.queryByRole('button', { name: 'Roll back' })).not.toBeInTheDocument();
  });

  it('says when it runs no bundle, and shows a refused one and the snapshot it imported', () => {
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    publish(
      'federation',
      edge(
        { bundles: [bundle(2, { status: 'refused', reason: 'bad signature' })] },
        {
          snapshot: { version: '20261207T174500Z', imported_at: null, patterns: 2, jobs: 1 },
        },
      ),
    );
    expect(screen.getByRole('region', { name: 'Update bundle' })).toHaveTextContent(
      'No update bundle applied: this edge serves its own adapters until central publishes a bundle for its kernels.',
    );
    expect(screen.getByTestId('edge-bundle-refused')).toHaveTextContent('Refused bundle 2: bad signature');
    expect(screen.queryByRole('button', { name: 'Roll back' })).not.toBeInTheDocument();
    expect(screen.getByTestId('federation-snapshot')).toHaveTextContent(
      'Snapshot 20261207T174500Z imported: 2 patterns, 1 job queued.',
    );
  });

  it('rolls back after a confirmation, for staff, and says why when it cannot', async () => {
    const user = userEvent.setup();
    let tries = 0;
    const after: BundlesView = {
      bundles: [
        bundle(7, { status: 'replaced', applied_at: secondsAgo(180) }),
        bundle(6, { status: 'applied', applied_at: secondsAgo(1), apply_ms: 95 }),
      ],
    };
    const requests = stubServer({
      [`POST ${ROLLBACK_PATH}`]: () =>
        ++tries === 1
          ? json(200, { type: 'bundle_status', version: 6, status: 'applied', reason: '' })
          : json(409, { detail: 'there is no earlier bundle on this edge to roll back to' }),
      [`GET ${BUNDLES_PATH}`]: () => json(200, after),
    });
    const confirm = vi
      .spyOn(window, 'confirm')
      .mockReturnValueOnce(false)
      .mockReturnValueOnce(true)
      .mockReturnValueOnce(true);
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    publish('federation', edge(EDGE_BUNDLES));

    await user.click(screen.getByRole('button', { name: 'Roll back' }));
    expect(confirm.mock.calls[0]![0]).toMatch(/^Roll back to the previous bundle\? This edge runs bundle 7;/);
    expect(requests).toHaveLength(0);

    await user.click(screen.getByRole('button', { name: 'Roll back' }));
    expect(await screen.findByTestId('rollback-done')).toHaveTextContent(
      'Rolled back: this edge runs bundle 6 again.',
    );
    expect(requests[0]).toMatchObject({ method: 'POST', path: ROLLBACK_PATH });
    expect(requests[0]!.headers['X-CSRFToken']).toBe('csrf-from-cookie');
    // The bundles read again show what it runs now.
    await waitFor(() => expect(screen.getByTestId('edge-bundle-version')).toHaveTextContent('6'));
    expect(screen.getByTestId('edge-bundle-apply-ms')).toHaveTextContent('95 ms');
    expect(screen.queryByTestId('edge-bundle-refused')).not.toBeInTheDocument();

    await user.click(screen.getByRole('button', { name: 'Roll back' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Could not roll back: there is no earlier bundle on this edge to roll back to',
    );
  });
});

describe('Federation panel: Flower rounds', () => {
  const FIGURES = {
    kernel: 3,
    round: 1,
    loss: 0.91234,
    examples: 96,
    averaged: true,
    edges_in: [
      { edge: 'edge-a', examples: 64, loss: 0.8 },
      { edge: 'edge-b', examples: 32, loss: null },
    ],
    edges_out: [],
    at: secondsAgo(60),
  };

  it('lists the rounds and follows one live: status, loss per round, edges in and out', async () => {
    serve({
      [`GET ${ROUNDS_PATH}`]: () =>
        json(
          200,
          page([
            round(2, { history: [FIGURES] }),
            round(1, {
              status: 'failed',
              error: '1 edge(s) have registered a SuperNode key, the round needs 2',
              started_at: null,
              finished_at: secondsAgo(3600),
            }),
          ]),
        ),
    });
    const { publish } = renderSignedIn(ANALYST, <FederationPanel />);
    publish('federation', central(undefined));

    const section = screen.getByRole('region', { name: 'Flower rounds' });
    expect(section).toHaveTextContent('Only admins can start a round.');
    expect(within(section).queryByRole('form')).not.toBeInTheDocument();
    const cards = await within(section).findAllByTestId('flower-round');
    expect(cards).toHaveLength(2);
    const [second, first] = cards;
    expect(within(second!).getByRole('heading')).toHaveTextContent('Round 2');
    expect(within(second!).getByTestId('round-status')).toHaveClass('badge', 'fed-round--running');
    expect(second).toHaveTextContent('kernels 3 · at least 2 edges · 1 of 2 rounds done · started 2 min ago');
    expect(within(second!).getByTestId('round-loss')).toHaveTextContent('0.9123');
    expect(within(second!).getByTestId('round-edges-in')).toHaveTextContent(
      'edge-a (64 ex., 0.8000), edge-b (32 ex.)',
    );
    expect(within(second!).getByTestId('round-edges-out')).toHaveTextContent('—');
    expect(within(first!).getByTestId('round-status')).toHaveTextContent('failed');
    expect(within(first!).getByTestId('round-error')).toHaveTextContent(
      '1 edge(s) have registered a SuperNode key, the round needs 2',
    );
    expect(first).toHaveTextContent('No round was recorded.');

    // Live: the second Flower round, with an edge that dropped out, then the result.
    publish('federation', {
      kind: 'federation.round',
      ...round(2, {
        history: [
          FIGURES,
          {
            ...FIGURES,
            round: 2,
            loss: 0.5,
            examples: 64,
            edges_in: [{ edge: 'edge-a', examples: 64, loss: 0.5 }],
            edges_out: [{ edge: 'edge-b', why: 'no reply within the round’s timeout' }],
          },
        ],
      }),
    });
    const losses = within(section).getAllByTestId('round-loss');
    expect(losses.map((cell) => cell.textContent)).toEqual(['0.9123', '0.5000']);
    const out = within(section).getAllByTestId('round-edges-out')[1]!;
    expect(out).toHaveTextContent('edge-b: no reply within the round’s timeout');
    expect(out).toHaveClass('fed-warn');
    expect(within(section).getAllByTestId('flower-round')[0]).toHaveTextContent('2 of 2 rounds done');

    publish('federation', {
      kind: 'federation.round',
      ...round(2, {
        status: 'completed',
        finished_at: secondsAgo(1),
        history: [FIGURES, { ...FIGURES, round: 2 }],
        result: {
          kernels: { '3': { promoted: true, reason: 'held-out loss 0.61 → 0.48', version: 4 } },
          bundle: { published: true, version: 12, kernels: [3] },
        },
      }),
    });
    const done = within(section).getAllByTestId('flower-round')[0]!;
    expect(within(done).getByTestId('round-status')).toHaveTextContent('completed');
    expect(within(done).getByTestId('round-verdicts')).toHaveTextContent(
      'Kernel 3: promoted — held-out loss 0.61 → 0.48',
    );
    expect(within(done).getByTestId('round-bundle')).toHaveTextContent('Published as bundle 12 (kernels 3).');
    // An older copy (the list read late) does not undo what was heard live.
    expect(mergeRounds([round(2)], [round(2, { status: 'completed' })])[0]!.status).toBe('completed');
  });

  it('starts a round for staff, checking the fields first, and shows the server’s refusal', async () => {
    const user = userEvent.setup();
    let tries = 0;
    const requests = serve({
      [`POST ${ROUNDS_PATH}`]: () =>
        ++tries === 1
          ? json(
              201,
              round(5, { kernels: [3, 17], min_edges: 2, rounds: 3, status: 'queued', started_at: null }),
            )
          : json(409, { detail: 'round 5 is running: one round at a time' }),
    });
    const { publish } = renderSignedIn(ADMIN, <FederationPanel />);
    publish('federation', central(undefined));
    const form = screen.getByRole('form', { name: 'Start a Flower round' });
    await screen.findByText(/^No Flower round yet\./);

    await user.type(within(form).getByLabelText('Kernels'), '3, 300');
    await user.clear(within(form).getByLabelText('Rounds'));
    await user.type(within(form).getByLabelText('Rounds'), '0');
    await user.click(within(form).getByRole('button', { name: 'Start round' }));
    expect(within(form).getByLabelText('Kernels')).toHaveAttribute('aria-invalid', 'true');
    expect(form).toHaveTextContent('“300” is not a kernel: kernels are 0–239.');
    expect(form).toHaveTextContent('A whole number from 1 to 50.');
    expect(requests.filter((r) => r.method === 'POST')).toHaveLength(0);

    await user.clear(within(form).getByLabelText('Kernels'));
    await user.type(within(form).getByLabelText('Kernels'), '3 17');
    await user.clear(within(form).getByLabelText('Minimum edges'));
    await user.type(within(form).getByLabelText('Minimum edges'), '2');
    await user.clear(within(form).getByLabelText('Rounds'));
    await user.type(within(form).getByLabelText('Rounds'), '3');
    await user.click(within(form).getByRole('button', { name: 'Start round' }));
    expect(await within(form).findByRole('status')).toHaveTextContent('Round 5 started: kernels 3, 17.');
    const post = requests.find((r) => r.method === 'POST')!;
    expect(post).toMatchObject({ path: ROUNDS_PATH, body: { kernels: [3, 17], min_edges: 2, rounds: 3 } });
    expect(post.headers['X-CSRFToken']).toBe('csrf-from-cookie');
    const card = screen.getByTestId('flower-round');
    expect(within(card).getByTestId('round-status')).toHaveTextContent('queued');
    expect(card).toHaveTextContent('Waiting for the edges’ first updates…');
    expect(card).toHaveTextContent('0 of 6 rounds done');

    await user.click(within(form).getByRole('button', { name: 'Start round' }));
    expect(await within(form).findByRole('alert')).toHaveTextContent(
      'Could not start the round: round 5 is running: one round at a time',
    );
  });

  it('says so when the rounds cannot be read', async () => {
    serve({ [`GET ${ROUNDS_PATH}`]: () => json(404, { detail: 'Not found.' }) });
    const { publish } = renderSignedIn(ANALYST, <FederationPanel />);
    publish('federation', central(undefined));
    expect(await screen.findByTestId('rounds-unread')).toHaveTextContent(
      'Could not read the rounds: this server has no Flower rounds API.',
    );
  });
});

describe('federation wording', () => {
  it('words bundles, apply times, edges’ states, kernels and snapshots', () => {
    expect(bundleVersion(null)).toBe('—');
    expect(bundleVersion(0)).toBe('—');
    expect(bundleVersion(4)).toBe('4');
    expect(millis(412.4)).toBe('412 ms');
    expect(millis(1999)).toBe('2.00 s');
    expect(millis(null)).toBe('—');
    expect(edgeBundleState({ version: 3, status: 'applied' })).toEqual({ text: 'applied', refused: false });
    expect(edgeBundleState({ version: 3, status: 'refused bundle 4: bad hash' })).toEqual({
      text: 'refused bundle 4: bad hash',
      refused: true,
    });
    expect(edgeBundleState({ version: 0, status: '' })).toEqual({ text: 'not reported yet', refused: false });
    expect(kernelList([])).toBe('—');
    expect(kernelList([1, 2, 3], 2)).toBe('1, 2 … (+1)');
    expect(snapshotText({ version: 'v', imported_at: null, patterns: 1, jobs: 1 }, Date.now())).toBe(
      'Snapshot v imported: 1 pattern, 1 job queued.',
    );
    expect(parseKernels('3, 17 42')).toEqual([3, 17, 42]);
    expect(parseKernels('')).toBe('Name at least one kernel (0–239).');
    expect(parseKernels('3 3')).toBe('Kernel 3 is named twice.');
    expect(parseKernels('1.5')).toBe('“1.5” is not a kernel: kernels are 0–239.');
    expect(parseKernels(Array.from({ length: 13 }, (_, i) => i).join(','))).toBe(
      'At most 12 kernels a round.',
    );
  });
});
