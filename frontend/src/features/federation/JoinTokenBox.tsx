import { useEffect, useId, useRef, useState } from 'react';
import { clockTime } from '../dashboard/format';
import type { JoinToken } from './types';

/** A join token for a node, as the server answered it once. */
export interface ShownToken extends JoinToken {
  nodeId: number;
  nodeName: string;
}

interface Props {
  token: ShownToken;
  /** Forget the token: it is not shown again. */
  onDismiss: () => void;
}

/**
 * The join command with its secret token, shown once: the server keeps only a hash of it, so
 * the box says to copy it now; dismissing it forgets it.
 */
export function JoinTokenBox({ token, onDismiss }: Props) {
  const titleId = useId();
  const commandRef = useRef<HTMLElement>(null);
  const boxRef = useRef<HTMLElement>(null);
  const [copied, setCopied] = useState<string | null>(null);

  // A new token takes the focus (and the eye): it will not be shown again.
  useEffect(() => {
    boxRef.current?.focus();
  }, [token.join_token]);

  async function copy(text: string, what: string, element: HTMLElement | null) {
    try {
      if (!navigator.clipboard?.writeText) throw new Error('no clipboard');
      await navigator.clipboard.writeText(text);
      setCopied(`${what} copied.`);
    } catch {
      // No clipboard here (a page served over plain HTTP from another host): select the text
      // so that Ctrl+C copies it.
      if (element) window.getSelection()?.selectAllChildren(element);
      setCopied(
        `The browser does not allow copying here: the ${what.toLowerCase()} is selected, press Ctrl+C.`,
      );
    }
  }

  return (
    <section className="fed-token" aria-labelledby={titleId} ref={boxRef} tabIndex={-1}>
      <h3 id={titleId}>Join token for {token.nodeName}</h3>
      <p className="fed-token__once">
        <strong>Shown once — copy it now.</strong> The server keeps only a hash of the token; if it is lost,
        ask for a new one while the node is pending.
      </p>
      <p className="fed-token__label dash-small">Run this on the edge:</p>
      <pre className="fed-token__command">
        <code ref={commandRef} data-testid="join-command">
          {token.join_command}
        </code>
      </pre>
      <p className="dash-small fed-token__secret">
        Token: <code data-testid="join-token">{token.join_token}</code>
        {token.join_expires_at && (
          <>
            {' '}
            · valid until{' '}
            <time dateTime={token.join_expires_at} title={token.join_expires_at}>
              {clockTime(token.join_expires_at)}
            </time>
          </>
        )}
      </p>
      <div className="fed-token__actions">
        <button
          type="button"
          className="button button--primary"
          onClick={() => void copy(token.join_command, 'Join command', commandRef.current)}
        >
          Copy join command
        </button>
        <button type="button" className="button" onClick={onDismiss}>
          Dismiss
        </button>
        {copied && (
          <span className="dash-small" role="status">
            {copied}
          </span>
        )}
      </div>
    </section>
  );
}
