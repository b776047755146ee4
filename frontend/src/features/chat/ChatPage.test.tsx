import { render, screen, waitFor, within } from '@testing-library/react';
import userEvent from '@testing-library/user-event';
import { MemoryRouter, Route, Routes, useLocation } from 'react-router-dom';
import { beforeEach, describe, expect, it } from 'vitest';
import { json, stubServer } from '../../test/http';
import { ChatPage } from './ChatPage';
import type { AssistantMessage, ChatLine, ConversationSummary } from './types';

const CONVERSATION: ConversationSummary = {
  id: 7,
  title: 'What is a basin?',
  created_at: '2026-01-01T00:00:00Z',
  updated_at: '2026-01-01T00:00:00Z',
  message_count: 0,
};

const ANSWER: AssistantMessage = {
  id: 41,
  role: 'assistant',
  content: 'A **basin** region',
  created_at: '2026-01-01T00:00:01Z',
  model: 'qig-constellation:latest',
  kernel: 13,
  kernel_role: 'MEMORY',
  distance: 0.2351,
  routed: [{ kernel: 13, role: 'MEMORY', distance: 0.2351 }],
  phi: 0.4123,
  kappa: 51.23,
  regime: 'geometric',
  ttft_ms: 42.4,
  tokens_per_s: 88.25,
  completion_tokens: 3,
  done_reason: 'stop',
  feedback: '',
  suggested_answer: '',
};

const page = (results: ConversationSummary[]) => ({
  count: results.length,
  next: null,
  previous: null,
  results,
});

/** A 200 NDJSON response whose lines the test sends one at a time. */
function liveStream() {
  const encoder = new TextEncoder();
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
  });
  return {
    response: new Response(body, { status: 200, headers: { 'Content-Type': 'application/x-ndjson' } }),
    send: (line: ChatLine) => controller.enqueue(encoder.encode(`${JSON.stringify(line)}\n`)),
    close: () => controller.close(),
  };
}

function Where() {
  return <p data-testid="where">{useLocation().pathname}</p>;
}

function renderChat(url = '/chat') {
  render(
    <MemoryRouter initialEntries={[url]}>
      <Routes>
        <Route path="/chat" element={<ChatPage />} />
        <Route path="/chat/:conversationId" element={<ChatPage />} />
      </Routes>
      <Where />
    </MemoryRouter>,
  );
}

beforeEach(() => {
  document.cookie = 'csrftoken=csrf-from-cookie; path=/';
});

describe('ChatPage', () => {
  it('streams an answer token by token, then shows what answered and how', async () => {
    const stream = liveStream();
    const requests = stubServer({
      'GET /api/v1/conversations/': () => json(200, page([])),
      'POST /api/v1/chat/': () => stream.response,
    });
    renderChat();
    expect(await screen.findByText(/No conversations yet/)).toBeInTheDocument();

    const box = screen.getByLabelText('Message');
    await userEvent.type(box, 'What is{Shift>}{Enter}{/Shift}a basin?');
    expect(box).toHaveValue('What is\na basin?');
    expect(requests.filter((r) => r.method === 'POST')).toHaveLength(0);
    await userEvent.type(box, '{Enter}');

    const chat = requests.find((r) => r.method === 'POST');
    expect(chat?.body).toEqual({ conversation: null, content: 'What is\na basin?' });
    expect(chat?.headers['X-CSRFToken']).toBe('csrf-from-cookie');

    stream.send({ type: 'conversation', conversation: CONVERSATION });
    await waitFor(() => expect(screen.getByTestId('where')).toHaveTextContent('/chat/7'));
    expect(box).toHaveValue('');
    expect(screen.getByRole('button', { name: 'Stop' })).toBeInTheDocument();
    stream.send({ type: 'token', content: 'A **basin**' });
    const streaming = await screen.findByTestId('streaming-answer');
    await waitFor(() => expect(streaming).toHaveTextContent('A basin'));
    expect(within(streaming).getByText('basin').tagName).toBe('STRONG');
    stream.send({ type: 'token', content: ' region' });
    await waitFor(() => expect(streaming).toHaveTextContent('A basin region'));
    expect(screen.queryByTestId('answer-metrics')).not.toBeInTheDocument();

    stream.send({ type: 'done', message: ANSWER });
    stream.close();
    const metrics = await screen.findByTestId('answer-metrics');
    expect(metrics).toHaveTextContent('Kernel13 MEMORY');
    expect(metrics).toHaveTextContent('Distance0.235');
    expect(metrics).toHaveTextContent('Φ0.412');
    expect(metrics).toHaveTextContent('κ51.2');
    expect(metrics).toHaveTextContent('Regimegeometric');
    expect(metrics).toHaveTextContent('TTFT42 ms');
    expect(metrics).toHaveTextContent('Speed88.3 tok/s');
    expect(screen.queryByTestId('streaming-answer')).not.toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'Send' })).toBeInTheDocument();
  });

  it('renders code blocks highlighted and GFM tables', async () => {
    stubServer({
      'GET /api/v1/conversations/': () => json(200, page([CONVERSATION])),
      'GET /api/v1/conversations/7/': () =>
        json(200, {
          ...CONVERSATION,
          messages: [
            { role: 'user', content: 'code?', created_at: CONVERSATION.created_at },
            {
              ...ANSWER,
              content: '```python\ndef f():\n    return 1\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |',
            },
          ],
        }),
    });
    renderChat('/chat/7');
    const code = await screen.findByText('def');
    expect(code).toHaveClass('hljs-keyword');
    expect(screen.getByRole('table')).toBeInTheDocument();
    expect(screen.getByRole('button', { name: 'What is a basin?' })).toHaveAttribute('aria-current', 'page');
  });

  it('says the model is not ready yet, with the server’s progress, and retries', async () => {
    let attempts = 0;
    const stream = liveStream();
    stubServer({
      'GET /api/v1/conversations/': () => json(200, page([])),
      'POST /api/v1/chat/': () => {
        attempts += 1;
        if (attempts === 1) {
          return json(503, { detail: 'no trained model yet: pretrain job 2 is running (12%)' });
        }
        return stream.response;
      },
    });
    renderChat();
    await userEvent.type(screen.getByLabelText('Message'), 'hello{Enter}');
    const alert = await screen.findByRole('alert');
    expect(alert).toHaveTextContent('The model is not ready yet.');
    expect(alert).toHaveTextContent('pretrain job 2 is running (12%)');
    expect(screen.getByLabelText('Message')).toHaveValue('hello'); // nothing lost

    await userEvent.click(screen.getByRole('button', { name: 'Try again' }));
    stream.send({ type: 'conversation', conversation: CONVERSATION });
    stream.send({ type: 'token', content: 'hi' });
    expect(await screen.findByTestId('streaming-answer')).toHaveTextContent('hi');
    expect(screen.queryByText('The model is not ready yet.')).not.toBeInTheDocument();
  });

  it('shows a validation error from the server', async () => {
    stubServer({
      'GET /api/v1/conversations/': () => json(200, page([])),
      'POST /api/v1/chat/': () => json(400, { detail: 'content: longer than 32000 characters (40000)' }),
    });
    renderChat();
    await userEvent.type(screen.getByLabelText('Message'), 'x{Enter}');
    expect(await screen.findByRole('alert')).toHaveTextContent('content: longer than 32000 characters');
  });

  it('stops a long answer and then shows the stored partial answer', async () => {
    const stream = liveStream();
    let stored = false;
    stubServer({
      'GET /api/v1/conversations/': () => json(200, page([{ ...CONVERSATION, message_count: 2 }])),
      'GET /api/v1/conversations/7/': () =>
        json(200, {
          ...CONVERSATION,
          messages: stored
            ? [
                { role: 'user', content: 'go on', created_at: CONVERSATION.created_at },
                { ...ANSWER, content: 'and on', done_reason: 'cancelled' },
              ]
            : [],
        }),
      'POST /api/v1/chat/': () => stream.response,
    });
    renderChat('/chat/7');
    expect(await screen.findByText(/Ask the constellation something/)).toBeInTheDocument();
    await userEvent.type(screen.getByLabelText('Answer length (tokens)'), '4000');
    await userEvent.type(screen.getByLabelText('Message'), 'go on{Enter}');
    stream.send({ type: 'conversation', conversation: CONVERSATION });
    stream.send({ type: 'token', content: 'and on' });
    expect(await screen.findByTestId('streaming-answer')).toHaveTextContent('and on');
    stored = true;
    await userEvent.click(screen.getByRole('button', { name: 'Stop' }));
    expect(await screen.findByText('Status')).toBeInTheDocument();
    expect(screen.getByTestId('answer-metrics')).toHaveTextContent('stopped');
    expect(screen.getByRole('button', { name: 'Send' })).toBeInTheDocument();
  });

  it('renames and deletes conversations from the list', async () => {
    const requests = stubServer({
      'GET /api/v1/conversations/': () => json(200, page([CONVERSATION])),
      'GET /api/v1/conversations/7/': () => json(200, { ...CONVERSATION, messages: [] }),
      'PATCH /api/v1/conversations/7/': (r) => json(200, { ...CONVERSATION, ...(r.body as object) }),
      'DELETE /api/v1/conversations/7/': () => json(204),
    });
    renderChat('/chat/7');
    await userEvent.click(await screen.findByRole('button', { name: 'Rename What is a basin?' }));
    const field = screen.getByLabelText('New title for What is a basin?');
    await userEvent.clear(field);
    await userEvent.type(field, 'Basins{Enter}');
    expect(await screen.findByRole('button', { name: 'Basins' })).toBeInTheDocument();
    expect(requests.find((r) => r.method === 'PATCH')?.body).toEqual({ title: 'Basins' });

    await userEvent.click(screen.getByRole('button', { name: 'Delete Basins' }));
    await userEvent.click(screen.getByRole('button', { name: 'Delete “Basins”' }));
    expect(await screen.findByText(/No conversations yet/)).toBeInTheDocument();
    await waitFor(() => expect(screen.getByTestId('where')).toHaveTextContent(/^\/chat$/));
  });

  it('says when a conversation does not exist', async () => {
    stubServer({
      'GET /api/v1/conversations/': () => json(200, page([])),
      'GET /api/v1/conversations/99/': () =>
        json(404, { detail: 'No Conversation matches the given query.' }),
    });
    renderChat('/chat/99');
    expect(await screen.findByRole('alert')).toHaveTextContent('This conversation does not exist');
  });
});
