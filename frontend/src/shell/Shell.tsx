import { Outlet } from 'react-router-dom';
import { useAuth } from '../features/auth/useAuth';
import { Header } from '../features/header/Header';
import { TelemetryProvider } from '../features/telemetry/TelemetryProvider';

/** Layout of every signed-in page: one telemetry socket, the header, and the routed page. */
export function Shell() {
  const { sessionEnded, verifySession } = useAuth();
  return (
    <TelemetryProvider onUnauthorized={sessionEnded} onDisconnected={verifySession}>
      <a className="skip-link" href="#main">
        Skip to main content
      </a>
      <div className="shell">
        <Header />
        <main id="main" className="shell__main" tabIndex={-1}>
          <Outlet />
        </main>
      </div>
    </TelemetryProvider>
  );
}
