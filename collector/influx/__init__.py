"""InfluxDB: line-protocol schema, writers for the v1 and v2 write APIs, and an InfluxQL reader."""
