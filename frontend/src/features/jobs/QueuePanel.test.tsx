import { screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { ADMIN, ANALYST, json, stubServer } from '../../test/http';
import { QueuePanel } from './QueuePanel';
import { job, page, renderSignedIn } from './testing';

const running = job({
  id: 1,
  kind: 'pretrain',
  status: 'running',
  priority: 50,
  progress: 0.25,
  step: 50,
  total_steps: 200,
  eta_s: 200,
  device: 'cpu',
  metrics: { loss: 5.4321, tokens_per_s: 812 },
  created_by: null,
  started_at: '2026-11-21T10:01:00Z',
});
const done = job({
  id: 2,
  kind: 'coordizer',
  status: 'completed',
  priority: 50,
  progress: 1,
  step: 1,
  total_steps: 1,
  device: 'cpu',
  finished_at: '2026-11-21T10:00:50Z',
});

beforeEach(() => {
  document.cookie = 'csrftoken=csrf-from-cookie; path=/';
});

const row = (id: number) => screen.getByRole('listitem', { name: `Job ${id}` });

describe('QueuePanel', () => {
  it('shows each job’s status, progress, ETA and measurements, and follows the live events', async () => {
    stubServer({
      'GET /api/v1/jobs/': () => json(200, page([running, done])),
      'GET /api/v1/uploads/': () => json(200, page([])),
    });
    const { publish, socket } = renderSignedIn(ADMIN, <QueuePanel />);
    await screen.findByText('1 running, 0 waiting, 1 finished');
    expect(socket.sent.at(-1)).toEqual({
      type: 'subscribe',
      topics: expect.arrayContaining(['system', 'jobs']),
    });

    const pretrain = row(1);
    expect(within(pretrain).getByTestId('job-status')).toHaveTextContent('running');
    expect(within(pretrain).getByRole('progressbar', { name: 'Job 1 progress' })).toHaveAttribute(
      'value',
      '0.25',
    );
    expect(within(pretrain).getByTestId('job-percent')).toHaveTextContent('25%');
    expect(within(pretrain).getByTestId('job-steps')).toHaveTextContent('step 50 / 200');
    expect(within(pretrain).getByTestId('job-eta')).toHaveTextContent('ETA 3 min 20 s');
    expect(within(pretrain).getByTestId('job-loss')).toHaveTextContent('5.4321');
    expect(within(row(2)).getByTestId('job-status')).toHaveTextContent('completed');

    publish('jobs', {
      kind: 'job.progress',
      job: 1,
      job_kind: 'pretrain',
      device: 'cpu',
      total_steps: 200,
      progress: 0.6,
      eta_s: 3725,
      step: 120,
      loss: 3.25,
      tokens_per_s: 900,
    });
    expect(within(pretrain).getByTestId('job-percent')).toHaveTextContent('60%');
    expect(within(pretrain).getByTestId('job-steps')).toHaveTextContent('step 120 / 200');
    expect(within(pretrain).getByTestId('job-eta')).toHaveTextContent('ETA 1 h 02 min');
    expect(within(pretrain).getByTestId('job-loss')).toHaveTextContent('3.25');

    // A late event for an older step changes nothing.
    publish('jobs', { kind: 'job.progress', job: 1, job_kind: 'pretrain', progress: 0.5, step: 100 });
    expect(within(pretrain).getByTestId('job-percent')).toHaveTextContent('60%');

    publish('jobs', {
      kind: 'job.status',
      job: 1,
      job_kind: 'pretrain',
      status: 'completed',
      status_reason: '',
      progress: 1,
      step: 200,
      total_steps: 200,
      device: 'cpu',
      error: '',
      error_kind: '',
    });
    expect(within(row(1)).getByTestId('job-status')).toHaveTextContent('completed');
    expect(within(row(1)).getByTestId('job-percent')).toHaveTextContent('100%');
    expect(screen.getByText('0 running, 0 waiting, 2 finished')).toBeInTheDocument();
    expect(within(row(1)).queryByRole('button', { name: 'Pause' })).not.toBeInTheDocument();
  });

  it('takes the history sent on subscribe, and fetches a job first heard of in an event', async () => {
    const queued = job({ id: 8, status: 'queued', target_kernels: [3, 17], priority: 5 });
    const requests = stubServer({
      'GET /api/v1/jobs/': () => json(200, page([])),
      'GET /api/v1/uploads/': () => json(200, page([])),
      'GET /api/v1/jobs/8/': () => json(200, queued),
    });
    const { publish } = renderSignedIn(ANALYST, <QueuePanel />);
    expect(await screen.findByTestId('queue-empty')).toHaveTextContent('bootstrap');

    publish('jobs', { kind: 'jobs.history', jobs: [running] });
    expect(within(row(1)).getByTestId('job-percent')).toHaveTextContent('25%');

    publish('jobs', { kind: 'job.status', job: 8, job_kind: 'adapter', status: 'queued' });
    expect(within(row(8)).getByTestId('job-status')).toHaveTextContent('queued');
    await waitFor(() => expect(within(row(8)).getByTestId('job-kernels')).toHaveTextContent('3, 17'));
    expect(requests.filter((r) => r.path === '/api/v1/jobs/8/')).toHaveLength(1);
  });

  it('lets an admin pause, resume, cancel (after confirming) and reprioritise, showing refusals', async () => {
    const requests = stubServer({
      'GET /api/v1/jobs/': () => json(200, page([running])),
      'GET /api/v1/uploads/': () => json(200, page([])),
      'POST /api/v1/jobs/1/pause/': () =>
        json(200, { ...running, status: 'paused', status_reason: 'paused by an admin' }),
      'POST /api/v1/jobs/1/resume/': () => json(200, { ...running, status: 'queued' }),
      'POST /api/v1/jobs/1/reprioritise/': (request) =>
        json(200, {
          ...running,
          status: 'queued',
          priority: (request.body as { priority: number }).priority,
        }),
      'POST /api/v1/jobs/1/cancel/': () =>
        json(409, { detail: 'job 1 is completed; cannot move it to cancelled' }),
    });
    renderSignedIn(ADMIN, <QueuePanel />);
    await screen.findByText('1 running, 0 waiting, 0 finished');

    await userEvent.click(within(row(1)).getByRole('button', { name: 'Pause' }));
    expect(await within(row(1)).findByText('paused by an admin')).toBeInTheDocument();
    expect(requests.at(-1)).toMatchObject({ method: 'POST', headers: { 'X-CSRFToken': 'csrf-from-cookie' } });
    await userEvent.click(within(row(1)).getByRole('button', { name: 'Resume' }));
    await waitFor(() => expect(within(row(1)).getByTestId('job-status')).toHaveTextContent('queued'));

    const priority = within(row(1)).getByLabelText('Job 1 priority');
    await userEvent.clear(priority);
    await userEvent.type(priority, '-7');
    await userEvent.click(within(row(1)).getByRole('button', { name: 'Set priority' }));
    await waitFor(() => expect(row(1)).toHaveTextContent('priority -7'));
    expect(requests.at(-1)?.body).toEqual({ priority: -7 });

    const confirm = vi.spyOn(window, 'confirm').mockReturnValueOnce(false).mockReturnValueOnce(true);
    const sent = requests.length;
    await userEvent.click(within(row(1)).getByRole('button', { name: 'Cancel' }));
    expect(requests).toHaveLength(sent);
    await userEvent.click(within(row(1)).getByRole('button', { name: 'Cancel' }));
    expect(confirm).toHaveBeenCalledTimes(2);
    expect(await within(row(1)).findByRole('alert')).toHaveTextContent(
      'Cancel failed: job 1 is completed; cannot move it to cancelled',
    );
  });

  it('shows developers the queue without controls', async () => {
    stubServer({ 'GET /api/v1/jobs/': () => json(200, page([running])) });
    renderSignedIn(ANALYST, <QueuePanel />);
    await screen.findByText('1 running, 0 waiting, 0 finished');
    expect(screen.getByText('Only admins can control jobs.')).toBeInTheDocument();
    expect(within(row(1)).queryByRole('button')).not.toBeInTheDocument();
    expect(screen.queryByRole('form', { name: 'Queue a job' })).not.toBeInTheDocument();
  });

  it('queues a job and shows the server’s 400 errors by field', async () => {
    let answer = json(400, { detail: 'hyperparameter steps=0 is outside [1, 1000000]' });
    const requests = stubServer({
      'GET /api/v1/jobs/': () => json(200, page([])),
      'GET /api/v1/uploads/': () =>
        json(
          200,
          page([{ id: 4, original_name: 'heart.txt', status: 'ready', created_at: '2026-11-21T10:00:00Z' }]),
        ),
      'POST /api/v1/jobs/': () => answer,
    });
    const { publish } = renderSignedIn(ADMIN, <QueuePanel />);
    const form = await screen.findByRole('form', { name: 'Queue a job' });
    await within(form).findByRole('option', { name: '#4 heart.txt (ready)' });
    await userEvent.selectOptions(within(form).getByLabelText('Datasets (uploads)'), '4');
    await userEvent.type(within(form).getByLabelText('Target kernels'), '3, 17');
    await userEvent.clear(within(form).getByLabelText('Steps'));
    await userEvent.type(within(form).getByLabelText('Steps'), '0');
    await userEvent.click(within(form).getByRole('button', { name: 'Queue job' }));

    await waitFor(() => expect(within(form).getByLabelText('Steps')).toHaveAttribute('aria-invalid', 'true'));
    expect(within(form).getByLabelText('Steps')).toHaveAccessibleDescription(
      'default 500 hyperparameter steps=0 is outside [1, 1000000]',
    );
    expect(requests.at(-1)?.body).toEqual({
      kind: 'adapter',
      priority: 0,
      datasets: [4],
      target_kernels: [3, 17],
      hyperparameters: { steps: 0, batch_size: 8, seq_len: 128, learning_rate: 0.0003, lora_rank: 8 },
    });

    answer = json(400, { target_kernels: { '1': ['Ensure this value is less than or equal to 239.'] } });
    await userEvent.click(within(form).getByRole('button', { name: 'Queue job' }));
    expect(
      await within(form).findByText('item 2: Ensure this value is less than or equal to 239.'),
    ).toBeInTheDocument();

    // An upload stored meanwhile becomes a choice at once.
    publish('learning', {
      kind: 'upload.status',
      upload: { id: 5, original_name: 'fresh.md', status: 'ready', created_at: '2026-11-21T10:05:00Z' },
    });
    expect(within(form).getByRole('option', { name: '#5 fresh.md (ready)' })).toBeInTheDocument();

    answer = json(201, job({ id: 30, target_kernels: [3, 17], datasets: [4] }));
    await userEvent.clear(within(form).getByLabelText('Steps'));
    await userEvent.type(within(form).getByLabelText('Steps'), '20');
    await userEvent.click(within(form).getByRole('button', { name: 'Queue job' }));
    expect(await within(form).findByRole('status')).toHaveTextContent('Queued job #30.');
    expect(within(row(30)).getByTestId('job-status')).toHaveTextContent('queued');
  });

  it('checks kernel indices before sending', async () => {
    const requests = stubServer({
      'GET /api/v1/jobs/': () => json(200, page([])),
      'GET /api/v1/uploads/': () => json(200, page([])),
    });
    renderSignedIn(ADMIN, <QueuePanel />);
    const form = await screen.findByRole('form', { name: 'Queue a job' });
    await userEvent.type(within(form).getByLabelText('Target kernels'), '3, 240');
    await userEvent.click(within(form).getByRole('button', { name: 'Queue job' }));
    expect(within(form).getByRole('alert')).toHaveTextContent(
      'Kernel indices are whole numbers from 0 to 239',
    );
    expect(requests.filter((r) => r.method === 'POST')).toHaveLength(0);
  });

  it('says why when the queue cannot be loaded', async () => {
    stubServer({ 'GET /api/v1/jobs/': () => json(500, { detail: 'database is locked' }) });
    renderSignedIn(ANALYST, <QueuePanel />);
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Could not load the queue: database is locked',
    );
  });
});
