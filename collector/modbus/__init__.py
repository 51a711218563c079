"""Modbus collection: gateways, register profiles, request planning and polling."""
