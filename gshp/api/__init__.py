"""The HTTP side of the service: health, metrics, API and live board."""
