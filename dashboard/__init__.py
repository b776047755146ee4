"""Live telemetry: the /ws/telemetry/ pipe, topic groups and the publishers feeding them."""
