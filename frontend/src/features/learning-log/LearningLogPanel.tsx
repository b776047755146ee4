import { useState } from 'react';
import { EmptyState, Panel } from '../dashboard/Panel';
import { clockTime } from '../dashboard/format';
import { useTelemetryTopic } from '../telemetry/useTelemetry';
import './learning-log.css';

/** One line of the learning log (`learning.event` on the `learning` topic). */
export interface LearningEvent {
  kind?: 'learning.event';
  id: number;
  event_kind: string;
  message: string;
  job: number | null;
  kernel: number | null;
  data?: Record<string, unknown>;
  created_at: string;
}

interface UploadStatus {
  kind: 'upload.status';
  time?: string;
  upload: { id: number; original_name: string; status: string; status_detail?: string; error?: string };
}

type LearningPayload =
  { kind: 'learning.history'; events: LearningEvent[] } | LearningEvent | UploadStatus | { kind: string };

export interface LogLine {
  key: string;
  time: string;
  label: string;
  message: string;
}

/** Lines shown: the history's 100 plus what arrives live, newest first. */
export const MAX_LINES = 200;

function eventLine(event: LearningEvent): LogLine {
  return { key: `e${event.id}`, time: event.created_at, label: event.event_kind, message: event.message };
}

function uploadLine(event: UploadStatus): LogLine {
  const u = event.upload;
  const detail = u.error || u.status_detail;
  return {
    key: `u${u.id}-${u.status}-${event.time ?? ''}`,
    time: event.time ?? '',
    label: 'upload',
    message: `${u.original_name}: ${u.status}${detail ? ` (${detail})` : ''}`,
  };
}

/** The learning log as a live feed, newest first. */
export function LearningLogPanel() {
  const [lines, setLines] = useState<LogLine[] | null>(null);

  useTelemetryTopic<LearningPayload>('learning', ({ payload }) => {
    if (payload.kind === 'learning.history' && 'events' in payload) {
      setLines(payload.events.map(eventLine));
      return;
    }
    let line: LogLine | null = null;
    if (payload.kind === 'learning.event') line = eventLine(payload as LearningEvent);
    else if (payload.kind === 'upload.status' && 'upload' in payload)
      line = uploadLine(payload as UploadStatus);
    if (!line) return;
    const added = line;
    setLines((current) =>
      (current ?? []).some((l) => l.key === added.key)
        ? current
        : [added, ...(current ?? [])].slice(0, MAX_LINES),
    );
  });

  return (
    <Panel id="learning-log" title="Learning log" className="learning-log">
      {!lines ? (
        <EmptyState>Loading the learning log…</EmptyState>
      ) : lines.length === 0 ? (
        <EmptyState>
          Nothing learned yet: guard actions, anchor moves, jobs, promotions, rollbacks and feedback appear
          here.
        </EmptyState>
      ) : (
        <ol className="learning-log__lines" role="log" aria-label="Learning events, newest first">
          {lines.map((line) => (
            <li key={line.key} className="learning-log__line">
              <time className="learning-log__time" dateTime={line.time}>
                {clockTime(line.time)}
              </time>
              <span className={`learning-log__kind learning-log__kind--${line.label}`}>
                {line.label.replaceAll('_', ' ')}
              </span>
              <span className="learning-log__message">{line.message}</span>
            </li>
          ))}
        </ol>
      )}
    </Panel>
  );
}
