"""MQTT ingestion from DTUs."""
