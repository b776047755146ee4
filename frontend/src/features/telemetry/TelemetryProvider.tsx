import { useEffect, useState, type ReactNode } from 'react';
import { TelemetryConnection, telemetryUrl } from './telemetryConnection';
import { TelemetryContext } from './useTelemetry';

/** Topics every page of the shell wants; panels add theirs with `subscribe`. */
const BASE_TOPICS = ['system'];

interface Props {
  children: ReactNode;
  /** Called when the server refuses the socket for want of a session (close code 4401). */
  onUnauthorized: () => void;
  /**
   * Called after every close that is followed by a reconnect. A refused handshake looks like any
   * other dropped connection to the browser (code 1006), so this is where to check the session.
   */
  onDisconnected?: () => void;
}

/** Opens the one telemetry socket for everything rendered inside it. */
export function TelemetryProvider({ children, onUnauthorized, onDisconnected }: Props) {
  const [connection] = useState(() => new TelemetryConnection({ url: telemetryUrl(), topics: BASE_TOPICS }));

  useEffect(() => {
    connection.start();
    return connection.stop;
  }, [connection]);

  useEffect(() => {
    let seen = connection.getSnapshot();
    return connection.watch(() => {
      const now = connection.getSnapshot();
      if (now.state === 'closed-unauthorized' && seen.state !== 'closed-unauthorized') onUnauthorized();
      if (now.failedAttempts > seen.failedAttempts) onDisconnected?.();
      seen = now;
    });
  }, [connection, onUnauthorized, onDisconnected]);

  return <TelemetryContext.Provider value={connection}>{children}</TelemetryContext.Provider>;
}
