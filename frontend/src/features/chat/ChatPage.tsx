import { useCallback, useEffect, useId, useRef, useState } from 'react';
import { useNavigate, useParams } from 'react-router-dom';
import { ApiError } from '../../api/client';
import { FeedbackControls, Metrics } from './AnswerFooter';
import { chatApi, isAssistant, streamChat } from './chatApi';
import { ConversationList } from './ConversationList';
import { Markdown } from './Markdown';
import type { AssistantMessage, ConversationSummary, Message, UserMessage } from './types';
import './chat.css';

/** An answer being streamed (or just stopped) in a conversation, before the server's copy. */
interface Draft {
  conversation: number | null;
  user: UserMessage;
  content: string;
  stopped: boolean;
}

const STOPPED_POLL_MS = 300;
const STOPPED_POLL_TRIES = 20;

function parseId(raw: string | undefined): number | null {
  const id = Number(raw);
  return raw && Number.isInteger(id) && id > 0 ? id : null;
}

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Chat with the trained constellation: conversations, streamed answers, measures, feedback. */
export function ChatPage() {
  const params = useParams();
  const id = parseId(params.conversationId);
  const navigate = useNavigate();

  const [conversations, setConversations] = useState<ConversationSummary[] | null>(null);
  const [listError, setListError] = useState<string | null>(null);
  const [loaded, setLoaded] = useState<{ id: number; messages: Message[] } | null>(null);
  const [threadError, setThreadError] = useState<{ id: number; message: string } | null>(null);
  const [draft, setDraft] = useState<Draft | null>(null);
  const [streaming, setStreaming] = useState(false);
  const [unavailable, setUnavailable] = useState<string | null>(null);
  const [sendError, setSendError] = useState<string | null>(null);
  const [input, setInput] = useState('');
  const [maxTokens, setMaxTokens] = useState('');

  const abortRef = useRef<AbortController | null>(null);
  const skipLoad = useRef<number | null>(null);
  const shownId = useRef<number | null>(id);
  const threadRef = useRef<HTMLDivElement | null>(null);
  const inputId = useId();
  const lengthId = useId();

  const messages: Message[] | null = id === null ? [] : loaded?.id === id ? loaded.messages : null;
  const shownDraft = draft && draft.conversation === id ? draft : null;

  const refreshList = useCallback(
    () =>
      chatApi.list().then(
        (page) => {
          setConversations(page.results);
          setListError(null);
        },
        (failure: Error) => setListError(`Could not load your conversations: ${failure.message}`),
      ),
    [],
  );

  useEffect(() => {
    chatApi.list().then(
      (page) => setConversations(page.results),
      (failure: Error) => setListError(`Could not load your conversations: ${failure.message}`),
    );
  }, []);

  useEffect(() => {
    if (id === null || skipLoad.current === id) {
      skipLoad.current = null;
      return;
    }
    let current = true;
    chatApi.get(id).then(
      (detail) => {
        if (current) setLoaded({ id, messages: detail.messages });
      },
      (failure: Error) => {
        if (!current) return;
        const message =
          failure instanceof ApiError && failure.status === 404
            ? 'This conversation does not exist (or is not yours).'
            : `Could not load the conversation: ${failure.message}`;
        setThreadError({ id, message });
      },
    );
    return () => {
      current = false;
    };
  }, [id]);

  useEffect(() => {
    shownId.current = id;
  }, [id]);

  useEffect(() => {
    const thread = threadRef.current;
    if (thread) thread.scrollTop = thread.scrollHeight;
  }, [messages?.length, shownDraft?.content]);

  /** After a stop or an error the server keeps the partial answer: show its stored copy. */
  async function showStored(conversation: number, expected: number) {
    for (let attempt = 0; attempt < STOPPED_POLL_TRIES; attempt += 1) {
      try {
        const detail = await chatApi.get(conversation);
        if (detail.messages.length >= expected) {
          // Only where the person still looks: they may have opened another conversation.
          if (shownId.current === conversation) setLoaded({ id: conversation, messages: detail.messages });
          setDraft(null);
          return;
        }
      } catch {
        // keep the local copy; try again
      }
      await wait(STOPPED_POLL_MS);
    }
  }

  async function send(content: string) {
    if (!content.trim() || streaming) return;
    const controller = new AbortController();
    abortRef.current = controller;
    setStreaming(true);
    setSendError(null);
    setUnavailable(null);
    const user: UserMessage = { role: 'user', content, created_at: new Date().toISOString() };
    const before = messages?.length ?? 0;
    let conversation = id;
    let finished = false;
    const limit = Number(maxTokens);
    try {
      await streamChat(
        {
          conversation: id,
          content,
          ...(maxTokens && limit > 0 ? { options: { num_predict: limit } } : {}),
        },
        controller.signal,
        (line) => {
          if (line.type === 'conversation') {
            conversation = line.conversation.id;
            setInput('');
            setDraft({ conversation, user, content: '', stopped: false });
            if (id === null) {
              setLoaded({ id: conversation, messages: [] });
              skipLoad.current = conversation;
              navigate(`/chat/${conversation}`);
            }
          } else if (line.type === 'token') {
            setDraft((d) => d && { ...d, content: d.content + line.content });
          } else if (line.type === 'done') {
            finished = true;
            const answer: AssistantMessage = line.message;
            const target = conversation;
            setLoaded((l) =>
              l && l.id === target ? { id: target, messages: [...l.messages, user, answer] } : l,
            );
            setDraft(null);
          } else {
            setSendError(`The answer failed: ${line.error}`);
          }
        },
      );
    } catch (failure) {
      if (failure instanceof DOMException && failure.name === 'AbortError') {
        setDraft((d) => d && { ...d, stopped: true });
      } else if (failure instanceof ApiError && failure.status === 503) {
        setUnavailable(failure.message);
      } else {
        setSendError((failure as Error).message);
      }
    } finally {
      abortRef.current = null;
      setStreaming(false);
    }
    if (!finished && conversation !== null) {
      await showStored(conversation, before + 2);
    }
    void refreshList();
  }

  function stop() {
    abortRef.current?.abort();
  }

  function leave(to: string) {
    stop();
    setUnavailable(null);
    setSendError(null);
    navigate(to);
  }

  async function rename(conversation: number, title: string) {
    const saved = await chatApi.rename(conversation, title);
    setConversations((list) => list?.map((c) => (c.id === conversation ? saved : c)) ?? list);
  }

  async function remove(conversation: number) {
    await chatApi.remove(conversation);
    setConversations((list) => list?.filter((c) => c.id !== conversation) ?? list);
    if (conversation === id) leave('/chat');
  }

  function updateAnswer(answerId: number, changes: Partial<AssistantMessage>) {
    setLoaded(
      (l) =>
        l && {
          ...l,
          messages: l.messages.map((m) => (isAssistant(m) && m.id === answerId ? { ...m, ...changes } : m)),
        },
    );
  }

  const title = conversations?.find((c) => c.id === id)?.title;
  const error = threadError && threadError.id === id ? threadError.message : null;

  return (
    <section className="chat" aria-labelledby="chat-title">
      <ConversationList
        conversations={conversations}
        selected={id}
        loadError={listError}
        onSelect={(next) => leave(`/chat/${next}`)}
        onNew={() => leave('/chat')}
        onRename={rename}
        onDelete={remove}
      />
      <div className="chat-main">
        <h1 id="chat-title" className="chat-main__title">
          {id === null ? 'New chat' : title || 'Chat'}
        </h1>
        <div
          className="chat-thread"
          ref={threadRef}
          role="log"
          aria-label="Conversation thread"
          aria-busy={streaming}
          aria-live="off"
        >
          {error && (
            <p role="alert" className="chat-error">
              {error}
            </p>
          )}
          {!error && messages === null && <p className="chat-muted">Loading the conversation…</p>}
          {messages?.length === 0 && !shownDraft && (
            <p className="chat-muted">
              Ask the constellation something. Each answer shows the kernel that answered, its distance, Φ/κ,
              time to first token and speed.
            </p>
          )}
          {messages?.map((message, index) =>
            isAssistant(message) ? (
              <article key={`a${message.id}`} className="chat-message chat-message--assistant">
                <h2 className="chat-visually-hidden">Answer</h2>
                <Markdown text={message.content} />
                <Metrics message={message} />
                <FeedbackControls
                  message={message}
                  onSaved={(changes) => updateAnswer(message.id, changes)}
                />
              </article>
            ) : (
              <article key={`u${index}`} className="chat-message chat-message--user">
                <h2 className="chat-visually-hidden">You</h2>
                <p className="chat-message__text">{message.content}</p>
              </article>
            ),
          )}
          {shownDraft && (
            <>
              <article className="chat-message chat-message--user">
                <h2 className="chat-visually-hidden">You</h2>
                <p className="chat-message__text">{shownDraft.user.content}</p>
              </article>
              <article
                className="chat-message chat-message--assistant"
                data-testid="streaming-answer"
                aria-busy={streaming}
              >
                <h2 className="chat-visually-hidden">Answer</h2>
                {shownDraft.content ? (
                  <Markdown text={shownDraft.content} />
                ) : (
                  <p className="chat-muted">{streaming ? 'Thinking…' : ''}</p>
                )}
                <p className="chat-muted" role="status">
                  {streaming ? 'Generating…' : shownDraft.stopped ? 'Stopped.' : ''}
                </p>
              </article>
            </>
          )}
        </div>
        {unavailable && (
          <div role="alert" className="chat-unavailable">
            <p>
              <strong>The model is not ready yet.</strong> {unavailable}
            </p>
            <button type="button" className="button" onClick={() => void send(input)} disabled={streaming}>
              Try again
            </button>
          </div>
        )}
        {sendError && (
          <p role="alert" className="chat-error">
            {sendError}
          </p>
        )}
        <form
          className="chat-composer"
          onSubmit={(event) => {
            event.preventDefault();
            void send(input);
          }}
        >
          <label htmlFor={inputId} className="chat-visually-hidden">
            Message
          </label>
          <textarea
            id={inputId}
            className="chat-composer__input"
            value={input}
            rows={3}
            placeholder="Ask something… (Enter sends, Shift+Enter adds a line)"
            onChange={(event) => setInput(event.target.value)}
            onKeyDown={(event) => {
              if (event.key === 'Enter' && !event.shiftKey && !event.nativeEvent.isComposing) {
                event.preventDefault();
                void send(input);
              }
            }}
          />
          <div className="chat-composer__bar">
            <label htmlFor={lengthId} className="chat-composer__length">
              Answer length (tokens)
              <input
                id={lengthId}
                type="number"
                min={1}
                max={4096}
                placeholder="128"
                value={maxTokens}
                onChange={(event) => setMaxTokens(event.target.value)}
              />
            </label>
            {streaming ? (
              <button type="button" className="button chat-danger" onClick={stop}>
                Stop
              </button>
            ) : (
              <button type="submit" className="button button--primary" disabled={!input.trim()}>
                Send
              </button>
            )}
          </div>
        </form>
      </div>
    </section>
  );
}
