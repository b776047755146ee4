import { QueuePanel } from '../jobs/QueuePanel';
import { UploadPanel } from './UploadPanel';
import './uploads.css';

/** Knowledge & training: upload knowledge for the kernels, and watch (or, as admin, steer) the queue. */
export function KnowledgePage() {
  return (
    <section className="knowledge" aria-labelledby="knowledge-title">
      <h1 id="knowledge-title">Knowledge &amp; training</h1>
      <UploadPanel />
      <QueuePanel />
    </section>
  );
}
