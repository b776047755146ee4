"""REST endpoints of the dashboard (telemetry history arrives with the dashboard issue)."""
