import { api, ApiError, CSRF_COOKIE, CSRF_HEADER, errorMessage, readCookie } from '../../api/client';
import type { CsrfResponse } from '../../api/types';
import { readNdjson } from './ndjson';
import type {
  AssistantMessage,
  ChatLine,
  ChatRequest,
  ConversationDetail,
  ConversationSummary,
  Feedback,
  Page,
} from './types';

const CONVERSATIONS = '/api/v1/conversations/';
export const CHAT_PATH = '/api/v1/chat/';

export const chatApi = {
  list: () => api.get<Page<ConversationSummary>>(CONVERSATIONS),
  get: (id: number) => api.get<ConversationDetail>(`${CONVERSATIONS}${id}/`),
  rename: (id: number, title: string) => api.patch<ConversationSummary>(`${CONVERSATIONS}${id}/`, { title }),
  remove: (id: number) => api.delete<null>(`${CONVERSATIONS}${id}/`),
  feedback: (id: number, feedback: Feedback, suggested_answer?: string) =>
    api.post<unknown>(`/api/v1/interactions/${id}/feedback/`, {
      feedback,
      ...(suggested_answer === undefined ? {} : { suggested_answer }),
    }),
};

async function csrfToken(): Promise<string> {
  return readCookie(CSRF_COOKIE) ?? (await api.get<CsrfResponse>('/api/v1/auth/csrf/')).csrfToken;
}

/**
 * Sends one message and calls `onLine` with each NDJSON line as it arrives. Errors before the
 * stream (400, 404, 503 "no trained model yet…") are thrown as `ApiError`s with the server's
 * `detail`; aborting `signal` (the Stop button) ends the stream with an `AbortError`.
 */
export async function streamChat(
  body: ChatRequest,
  signal: AbortSignal,
  onLine: (line: ChatLine) => void,
): Promise<void> {
  const headers = {
    Accept: 'application/x-ndjson',
    'Content-Type': 'application/json',
    [CSRF_HEADER]: await csrfToken(),
  };
  let response: Response;
  try {
    response = await fetch(CHAT_PATH, {
      method: 'POST',
      headers,
      credentials: 'same-origin',
      body: JSON.stringify(body),
      signal,
    });
  } catch (cause) {
    if (cause instanceof DOMException && cause.name === 'AbortError') throw cause;
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new ApiError(0, `Cannot reach the server (${reason}).`);
  }
  if (!response.ok || !response.body) {
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON: the status line says what happened
    }
    throw new ApiError(response.status, errorMessage(response.status, response.statusText, parsed), parsed);
  }
  for await (const line of readNdjson<ChatLine>(response.body, signal)) onLine(line);
}

export function isAssistant(message: { role: string }): message is AssistantMessage {
  return message.role === 'assistant';
}
