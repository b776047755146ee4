import { createContext, useContext, useEffect, useRef, useSyncExternalStore } from 'react';
import type {
  TelemetryConnection,
  TelemetryEvent,
  TelemetryListener,
  TelemetrySnapshot,
} from './telemetryConnection';

export const TelemetryContext = createContext<TelemetryConnection | null>(null);

export interface Telemetry extends TelemetrySnapshot {
  /** Ask the server for more topics; they are asked for again after every reconnect. */
  subscribe: (topics: readonly string[]) => void;
  /** Listen to one topic's events; returns the function that stops listening. */
  addListener: (topic: string, listener: TelemetryListener) => () => void;
}

/** The shared telemetry socket's state (re-renders on every change) and its controls. */
export function useTelemetry(): Telemetry {
  const connection = useContext(TelemetryContext);
  if (!connection) throw new Error('useTelemetry must be used inside <TelemetryProvider>');
  const snapshot = useSyncExternalStore(connection.watch, connection.getSnapshot);
  return { ...snapshot, subscribe: connection.subscribe, addListener: connection.addListener };
}

/**
 * Subscribes to `topic` and calls `onEvent` for each of its events while the calling component
 * is mounted. `onEvent` may change between renders without resubscribing.
 */
export function useTelemetryTopic<P = unknown>(
  topic: string,
  onEvent: (event: TelemetryEvent<P>) => void,
): void {
  const connection = useContext(TelemetryContext);
  if (!connection) throw new Error('useTelemetryTopic must be used inside <TelemetryProvider>');
  const latest = useRef(onEvent);
  useEffect(() => {
    latest.current = onEvent;
  });
  useEffect(() => {
    connection.subscribe([topic]);
    return connection.addListener(topic, (event) => latest.current(event as TelemetryEvent<P>));
  }, [connection, topic]);
}
