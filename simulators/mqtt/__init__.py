"""A DTU simulator: the shared site physics → payload profiles (encode side) → MQTT at QoS 1."""

from simulators.mqtt.publisher import DtuSimulator, SimPlan

__all__ = ["DtuSimulator", "SimPlan"]
