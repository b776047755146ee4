import { useState } from 'react';
import { Link } from 'react-router-dom';
import { Panel } from './Panel';
import { clockTime } from './format';
import { useTelemetryTopic } from '../telemetry/useTelemetry';

interface UploadStatus {
  kind: 'upload.status';
  time?: string;
  upload: { id: number; original_name: string; status: string };
}

type Payload =
  | { kind: 'learning.history'; stats?: { uploads?: number; chunks?: number } }
  | UploadStatus
  | { kind: string };

/** Counts of what the system was taught, the uploads changing now, and the way to the knowledge page. */
export function KnowledgeCard() {
  const [counts, setCounts] = useState<{ uploads?: number; chunks?: number } | null>(null);
  const [recent, setRecent] = useState<UploadStatus[]>([]);

  useTelemetryTopic<Payload>('learning', ({ payload }) => {
    if (payload.kind === 'learning.history') setCounts((payload as { stats?: typeof counts }).stats ?? {});
    else if (payload.kind === 'upload.status' && 'upload' in payload) {
      const event = payload as UploadStatus;
      setRecent((r) => [event, ...r.filter((e) => e.upload.id !== event.upload.id)].slice(0, 3));
    }
  });

  return (
    <Panel id="knowledge-card" title="Knowledge" aside={<Link to="/knowledge">Upload knowledge</Link>}>
      <p className="dash-empty">
        {counts && typeof counts.uploads === 'number'
          ? `${counts.uploads} uploads, ${counts.chunks ?? '—'} chunks stored.`
          : 'Upload text, Markdown, HTML, PDF, JSONL or CSV; it is chunked, routed to kernels and can train them.'}
      </p>
      {recent.length > 0 && (
        <ul className="dash-list dash-link-card__items" aria-label="Uploads changing now">
          {recent.map((e) => (
            <li key={e.upload.id}>
              <span className="muted">{clockTime(e.time)}</span>
              <span>{e.upload.original_name}</span>
              <span>{e.upload.status}</span>
            </li>
          ))}
        </ul>
      )}
    </Panel>
  );
}
