"""A DTU simulator: site flow model → payload profiles (encode side) → MQTT at QoS 1."""

from simulators.mqtt.flow import SCENARIOS, FlowModel, Scenario
from simulators.mqtt.publisher import DtuSimulator, SimPlan

__all__ = ["SCENARIOS", "DtuSimulator", "FlowModel", "Scenario", "SimPlan"]
