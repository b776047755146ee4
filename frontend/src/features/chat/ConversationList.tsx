import { useState } from 'react';
import type { ConversationSummary } from './types';

interface Props {
  conversations: ConversationSummary[] | null;
  selected: number | null;
  loadError: string | null;
  onSelect: (id: number) => void;
  onNew: () => void;
  onRename: (id: number, title: string) => Promise<void>;
  onDelete: (id: number) => Promise<void>;
}

/** The signed-in user's conversations: new, select, rename, delete. */
export function ConversationList({
  conversations,
  selected,
  loadError,
  onSelect,
  onNew,
  onRename,
  onDelete,
}: Props) {
  const [editing, setEditing] = useState<number | null>(null);
  const [title, setTitle] = useState('');
  const [confirming, setConfirming] = useState<number | null>(null);
  const [error, setError] = useState<string | null>(null);

  async function run(action: () => Promise<void>, what: string) {
    setError(null);
    try {
      await action();
    } catch (failure) {
      setError(`Could not ${what}: ${(failure as Error).message}`);
    }
  }

  return (
    <nav className="chat-sidebar" aria-label="Conversations">
      <button type="button" className="button button--primary chat-sidebar__new" onClick={onNew}>
        New chat
      </button>
      {loadError && (
        <p role="alert" className="chat-error">
          {loadError}
        </p>
      )}
      {error && (
        <p role="alert" className="chat-error">
          {error}
        </p>
      )}
      {conversations === null && !loadError && <p className="chat-muted">Loading conversations…</p>}
      {conversations?.length === 0 && (
        <p className="chat-muted">No conversations yet. Ask something to start one.</p>
      )}
      <ul className="chat-sidebar__list">
        {conversations?.map((conversation) => {
          const name = conversation.title || 'Untitled';
          if (editing === conversation.id) {
            return (
              <li key={conversation.id} className="chat-sidebar__item">
                <form
                  className="chat-sidebar__rename"
                  onSubmit={(event) => {
                    event.preventDefault();
                    void run(async () => {
                      await onRename(conversation.id, title.trim());
                      setEditing(null);
                    }, 'rename the conversation');
                  }}
                >
                  <label className="chat-visually-hidden" htmlFor={`rename-${conversation.id}`}>
                    New title for {name}
                  </label>
                  <input
                    id={`rename-${conversation.id}`}
                    value={title}
                    maxLength={200}
                    autoFocus
                    onChange={(event) => setTitle(event.target.value)}
                    onKeyDown={(event) => {
                      if (event.key === 'Escape') setEditing(null);
                    }}
                  />
                  <button type="submit" className="button">
                    Save
                  </button>
                  <button type="button" className="button" onClick={() => setEditing(null)}>
                    Cancel
                  </button>
                </form>
              </li>
            );
          }
          return (
            <li key={conversation.id} className="chat-sidebar__item">
              <button
                type="button"
                className="chat-sidebar__select"
                aria-current={selected === conversation.id ? 'page' : undefined}
                onClick={() => onSelect(conversation.id)}
              >
                {name}
              </button>
              {confirming === conversation.id ? (
                <span className="chat-sidebar__actions">
                  <button
                    type="button"
                    className="button chat-danger"
                    onClick={() =>
                      void run(async () => {
                        await onDelete(conversation.id);
                        setConfirming(null);
                      }, 'delete the conversation')
                    }
                  >
                    Delete “{name}”
                  </button>
                  <button type="button" className="button" onClick={() => setConfirming(null)}>
                    Keep
                  </button>
                </span>
              ) : (
                <span className="chat-sidebar__actions">
                  <button
                    type="button"
                    className="chat-icon"
                    aria-label={`Rename ${name}`}
                    title="Rename"
                    onClick={() => {
                      setEditing(conversation.id);
                      setTitle(conversation.title);
                    }}
                  >
                    ✎
                  </button>
                  <button
                    type="button"
                    className="chat-icon"
                    aria-label={`Delete ${name}`}
                    title="Delete"
                    onClick={() => setConfirming(conversation.id)}
                  >
                    ✕
                  </button>
                </span>
              )}
            </li>
          );
        })}
      </ul>
    </nav>
  );
}
