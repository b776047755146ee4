import { fireEvent, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { ADMIN, ANALYST, json, stubServer } from '../../test/http';
import { FakeXhr, job, page, renderSignedIn } from '../jobs/testing';
import type { Upload } from './types';
import { UploadPanel } from './UploadPanel';

function upload(overrides: Partial<Upload> & { id: number }): Upload {
  return {
    original_name: 'notes.txt',
    sha256: 'ab'.repeat(32),
    size_bytes: 2048,
    content_type: 'text/plain',
    file_type: 'txt',
    domain: 'auto',
    priority: 0,
    status: 'ready',
    status_detail: '',
    error: '',
    n_chunks: 3,
    n_tokens: 410,
    n_records: 0,
    n_characters: 1900,
    preview: 'The heart keeps time.',
    routed: [],
    uploaded_by: 'admin',
    created_at: '2026-11-21T10:00:00Z',
    ...overrides,
  };
}

const file = (name: string, text = 'some text') => new File([text], name, { type: 'text/plain' });

beforeEach(() => {
  FakeXhr.instances = [];
  vi.stubGlobal('XMLHttpRequest', FakeXhr);
  document.cookie = 'csrftoken=csrf-from-cookie; path=/';
});

function drop(...files: File[]) {
  fireEvent.drop(screen.getByTestId('dropzone'), { dataTransfer: { files } });
}

describe('UploadPanel', () => {
  it('sends one request per dropped file with the chosen fields, showing bytes and then each result', async () => {
    stubServer({ 'GET /api/v1/uploads/': () => json(200, page([])) });
    renderSignedIn(ADMIN, <UploadPanel />);
    expect(await screen.findByText('Nothing uploaded yet.')).toBeInTheDocument();

    drop(file('heart.txt', 'x'.repeat(100)), file('broken.jsonl'));
    expect(screen.getByRole('list', { name: 'Chosen files' })).toHaveTextContent('heart.txt');
    expect(screen.queryByLabelText('CSV text column')).not.toBeInTheDocument();
    await userEvent.selectOptions(screen.getByLabelText('Domain'), 'MEMORY');
    await userEvent.clear(screen.getByLabelText('Priority (−100…100)'));
    await userEvent.type(screen.getByLabelText('Priority (−100…100)'), '5');
    await userEvent.click(screen.getByLabelText('Train the routed kernels on it now'));
    await userEvent.click(screen.getByRole('button', { name: 'Upload 2 files' }));

    await waitFor(() => expect(FakeXhr.instances).toHaveLength(1));
    const first = FakeXhr.instances[0]!;
    expect(first.method).toBe('POST');
    expect(first.url).toBe('/api/v1/uploads/');
    expect(first.headers['X-CSRFToken']).toBe('csrf-from-cookie');
    expect(first.fields()).toEqual({ file: 'heart.txt', domain: 'MEMORY', priority: '5', train: 'true' });

    first.progress(50, 100);
    expect(screen.getByRole('progressbar', { name: 'Uploading heart.txt' })).toHaveAttribute('value', '50');
    expect(screen.getByText('50 B / 100 B (50%)')).toBeInTheDocument();

    const stored = upload({
      id: 7,
      original_name: 'heart.txt',
      domain: 'MEMORY',
      routed: [
        { kernel: 3, role: 'MEMORY', distance: 0.41234 },
        { kernel: 17, role: 'MEMORY', distance: 0.5 },
      ],
    });
    first.respond(201, {
      results: [{ file: 'heart.txt', upload: stored, duplicate: false, error: null }],
      job: job({ id: 12, target_kernels: [3, 17] }),
    });
    const result = await screen.findByRole('listitem', { name: 'Result for heart.txt' });
    expect(await within(result).findByText('Stored')).toBeInTheDocument();
    const routed = within(result).getByTestId('routed-kernels');
    expect(routed).toHaveTextContent('#3MEMORY0.4123');
    expect(routed).toHaveTextContent('#17MEMORY0.5000');
    expect(within(result).getByRole('link', { name: 'adapter job #12' })).toHaveAttribute('href', '#job-12');
    expect(
      within(result).getByText(/Preview of the extracted text \(1,900 characters\)/),
    ).toBeInTheDocument();

    await waitFor(() => expect(FakeXhr.instances).toHaveLength(2));
    const second = FakeXhr.instances[1]!;
    expect(second.fields()).toMatchObject({ file: 'broken.jsonl' });
    second.respond(400, {
      results: [{ file: 'broken.jsonl', upload: null, duplicate: false, error: 'line 3: not valid JSON' }],
      job: null,
    });
    const failed = await screen.findByRole('listitem', { name: 'Result for broken.jsonl' });
    expect(await within(failed).findByRole('alert')).toHaveTextContent('Error: line 3: not valid JSON');
    // The stored upload joins the recent list.
    expect(within(screen.getByTestId('recent-uploads')).getByText('#7 heart.txt')).toBeInTheDocument();
  });

  it('asks for the text column only for csv files, and sends it only with them', async () => {
    stubServer({ 'GET /api/v1/uploads/': () => json(200, page([])) });
    renderSignedIn(ANALYST, <UploadPanel />);
    await userEvent.upload(screen.getByLabelText('Files to upload'), [file('table.csv'), file('a.md')]);
    await userEvent.type(screen.getByLabelText('CSV text column'), 'body');
    await userEvent.click(screen.getByRole('button', { name: 'Upload 2 files' }));

    await waitFor(() => expect(FakeXhr.instances).toHaveLength(1));
    expect(FakeXhr.instances[0]!.fields()).toEqual({
      file: 'table.csv',
      domain: 'auto',
      priority: '0',
      text_column: 'body',
      train: 'false',
    });
    FakeXhr.instances[0]!.respond(400, {
      results: [
        { file: 'table.csv', upload: null, duplicate: false, error: 'no column "body"; columns: id, text' },
      ],
      job: null,
    });
    await waitFor(() => expect(FakeXhr.instances).toHaveLength(2));
    expect(FakeXhr.instances[1]!.fields()).not.toHaveProperty('text_column');
    expect(await screen.findByText(/no column "body"; columns: id, text/)).toBeInTheDocument();
  });

  it('links a duplicate to the upload it repeats, and shows a refusal without results', async () => {
    const existing = upload({ id: 4, original_name: 'old.txt' });
    stubServer({ 'GET /api/v1/uploads/': () => json(200, page([existing])) });
    renderSignedIn(ANALYST, <UploadPanel />);
    expect(await screen.findByText('#4 old.txt')).toBeInTheDocument();

    drop(file('same.txt'), file('huge.pdf'));
    await userEvent.click(screen.getByRole('button', { name: 'Upload 2 files' }));
    await waitFor(() => expect(FakeXhr.instances).toHaveLength(1));
    FakeXhr.instances[0]!.respond(201, {
      results: [{ file: 'same.txt', upload: existing, duplicate: true, error: null }],
      job: null,
    });
    expect(await screen.findByRole('link', { name: 'see upload #4' })).toHaveAttribute('href', '#upload-4');
    expect(document.getElementById('upload-4')).not.toBeNull();

    await waitFor(() => expect(FakeXhr.instances).toHaveLength(2));
    FakeXhr.instances[1]!.respond(413, {
      detail: 'huge.pdf is 80.0 MB; the limit is 50 MB (QIG_MAX_UPLOAD_MB).',
    });
    const failed = await screen.findByRole('listitem', { name: 'Result for huge.pdf' });
    expect(await within(failed).findByRole('alert')).toHaveTextContent('the limit is 50 MB');
  });

  it('offers training only to staff', async () => {
    stubServer({ 'GET /api/v1/uploads/': () => json(200, page([])) });
    renderSignedIn(ANALYST, <UploadPanel />);
    await screen.findByText('Nothing uploaded yet.');
    expect(screen.queryByLabelText('Train the routed kernels on it now')).not.toBeInTheDocument();
  });

  it('says why no training was queued when the server could not queue it', async () => {
    stubServer({ 'GET /api/v1/uploads/': () => json(200, page([])) });
    renderSignedIn(ADMIN, <UploadPanel />);
    drop(file('early.txt'));
    await userEvent.click(screen.getByLabelText('Train the routed kernels on it now'));
    await userEvent.click(screen.getByRole('button', { name: 'Upload 1 file' }));
    await waitFor(() => expect(FakeXhr.instances).toHaveLength(1));
    const pending = upload({
      id: 11,
      original_name: 'early.txt',
      status: 'pending',
      status_detail: 'waiting for the coordizer',
    });
    FakeXhr.instances[0]!.respond(201, {
      results: [{ file: 'early.txt', upload: pending, duplicate: false, error: null }],
      job: null,
      job_error: 'an adapter job needs at least one target kernel: its datasets are not routed yet',
    });
    const result = await screen.findByRole('listitem', { name: 'Result for early.txt' });
    expect(await within(result).findByRole('alert')).toHaveTextContent(
      'No training was queued: an adapter job needs at least one target kernel',
    );
    expect(within(result).getByTestId('upload-status')).toHaveTextContent(
      'pending: waiting for the coordizer',
    );
  });

  it('refuses a priority outside −100…100 before sending anything', async () => {
    stubServer({ 'GET /api/v1/uploads/': () => json(200, page([])) });
    renderSignedIn(ANALYST, <UploadPanel />);
    drop(file('a.txt'));
    await userEvent.clear(screen.getByLabelText('Priority (−100…100)'));
    await userEvent.type(screen.getByLabelText('Priority (−100…100)'), '500');
    await userEvent.click(screen.getByRole('button', { name: 'Upload 1 file' }));
    expect(screen.getByRole('alert')).toHaveTextContent('Priority must be a whole number from −100 to 100.');
    expect(FakeXhr.instances).toHaveLength(0);
  });

  it('follows an upload from pending to ready through upload.status events', async () => {
    const pending = upload({
      id: 9,
      original_name: 'early.md',
      status: 'pending',
      status_detail: 'waiting for the coordizer',
      n_chunks: 0,
      n_tokens: 0,
    });
    stubServer({ 'GET /api/v1/uploads/': () => json(200, page([pending])) });
    const { publish } = renderSignedIn(ANALYST, <UploadPanel />);
    const card = await screen.findByRole('article', { name: 'Upload 9: early.md' });
    expect(within(card).getByTestId('upload-status')).toHaveTextContent('pending: waiting for the coordizer');
    expect(within(card).getByText('Routed to kernels once it is ready.')).toBeInTheDocument();

    publish('learning', {
      kind: 'upload.status',
      upload: {
        ...pending,
        status: 'ready',
        status_detail: '',
        n_chunks: 5,
        n_tokens: 640,
        routed: [{ kernel: 200, role: 'META', distance: 1.2 }],
      },
    });
    expect(within(card).getByTestId('upload-status')).toHaveTextContent('ready');
    expect(within(card).getByTestId('upload-chunks')).toHaveTextContent('5');
    expect(within(card).getByTestId('upload-tokens')).toHaveTextContent('640');
    expect(within(card).getByTestId('routed-kernels')).toHaveTextContent('#200META1.2000');
  });

  it('deletes an upload after confirmation and shows the server’s refusal', async () => {
    const mine = upload({ id: 5, original_name: 'mine.txt', uploaded_by: 'ada' });
    stubServer({
      'GET /api/v1/uploads/': () => json(200, page([mine])),
      'DELETE /api/v1/uploads/5/': () => json(409, { detail: 'job 3 (queued) uses this upload' }),
    });
    vi.spyOn(window, 'confirm').mockReturnValue(true);
    renderSignedIn(ANALYST, <UploadPanel />);
    const card = await screen.findByRole('article', { name: 'Upload 5: mine.txt' });
    await userEvent.click(within(card).getByRole('button', { name: 'Delete' }));
    expect(await screen.findByRole('alert')).toHaveTextContent(
      'Could not delete #5: job 3 (queued) uses this upload',
    );
  });
});
