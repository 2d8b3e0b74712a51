"""HTTP: the JSON API, health and metrics, spectator pages and organizer forms."""
