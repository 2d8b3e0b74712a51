"""The realtime layer: event log, hub over broadcaster, batching, WebSocket endpoints."""
