import { useSignedInUser } from '../auth/useAuth';
import { AvatarPanel } from '../avatar/Avatar';
import { ConsciousnessPanel } from '../consciousness/ConsciousnessPanel';
import { FederationPanel } from '../federation/FederationPanel';
import { GpuFleetPanel } from '../gpu/GpuFleetPanel';
import { QueuePanel } from '../jobs/QueuePanel';
import { KernelGrid } from '../kernels/KernelGrid';
import { LearningLogPanel } from '../learning-log/LearningLogPanel';
import { LearningLoopPanel } from '../learning-loop/LearningLoopPanel';
import { LearningStatsPanel } from '../learning-stats/LearningStatsPanel';
import { ChatCard } from './ChatCard';
import { KnowledgeCard } from './KnowledgeCard';
import { Panel } from './Panel';
import './dashboard.css';

/**
 * The control center's home: every panel subscribes to its own telemetry topic and keeps its own
 * state, so a heartbeat or one topic's event re-renders only the panel that listens to it.
 */
export function DashboardPage() {
  const user = useSignedInUser();
  return (
    <div className="dash">
      <div className="dash__intro">
        <h1 id="home-title">Welcome, {user.username}</h1>
        <p>Live state of the constellation: training, kernels, devices and what it learned.</p>
      </div>

      <div className="dash__row dash__row--top">
        <AvatarPanel />
        <ConsciousnessPanel />
      </div>

      <div className="dash__row dash__row--middle">
        <KernelGrid />
        <GpuFleetPanel />
      </div>

      <div className="dash__row dash__row--cards">
        <div className="dash-queue">
          <QueuePanel compact />
        </div>
        <LearningLogPanel />
        <LearningLoopPanel />
        <LearningStatsPanel />
      </div>

      <div className="dash__row dash__row--cards">
        <ChatCard />
        <KnowledgeCard />
        <Panel id="links" title="Elsewhere">
          <ul className="dash-list">
            {user.is_staff && (
              <li>
                <a href="/admin/">Django admin</a> — users, kernels, jobs and every other record
              </li>
            )}
            <li>
              <a href="/api/v1/schema/swagger/">API documentation</a> — the REST API, from its OpenAPI schema
            </li>
          </ul>
        </Panel>
      </div>

      {/* Its own row: central's node table has ten columns. */}
      <div className="dash__row dash__row--wide">
        <FederationPanel />
      </div>
    </div>
  );
}
