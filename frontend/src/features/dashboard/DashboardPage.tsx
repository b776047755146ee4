import { useSignedInUser } from '../auth/useAuth';

/** Panels the dashboard will grow, in the order they are planned; none is live yet. */
const UPCOMING_PANELS = [
  { name: 'Kernels', what: 'the 240-kernel grid, each kernel’s status, anchor and role' },
  { name: 'Jobs', what: 'fine-tuning and pretraining jobs with progress, Φ and κ' },
  { name: 'Uploads', what: 'knowledge files and the chunks made from them' },
  { name: 'GPU fleet', what: 'devices, memory and utilisation as the workers measure them' },
  { name: 'Chat', what: 'talk to the constellation and see which kernel answered' },
];

export function DashboardPage() {
  const user = useSignedInUser();
  return (
    <div className="home">
      <section className="home__intro" aria-labelledby="home-title">
        <h1 id="home-title">Welcome, {user.username}</h1>
        <p>
          This is the control center’s shell. The live indicator above shows the telemetry socket: the server
          time and the client count come from the server’s heartbeat.
        </p>
      </section>

      <div className="home__cards">
        <section className="card" aria-labelledby="panels-title">
          <h2 id="panels-title">Panels</h2>
          <p className="muted">No panels yet: they arrive here as they are built.</p>
          <ul className="panel-list">
            {UPCOMING_PANELS.map((panel) => (
              <li key={panel.name}>
                <strong>{panel.name}</strong> — {panel.what}
              </li>
            ))}
          </ul>
        </section>

        <section className="card" aria-labelledby="links-title">
          <h2 id="links-title">Elsewhere</h2>
          <ul className="link-list">
            {user.is_staff && (
              <li>
                <a href="/admin/">Django admin</a> — users, kernels, jobs and every other record
              </li>
            )}
            <li>
              <a href="/api/v1/schema/swagger/">API documentation</a> — the REST API, from its OpenAPI schema
            </li>
          </ul>
        </section>
      </div>
    </div>
  );
}
