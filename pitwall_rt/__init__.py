"""pitwall_rt: a real-time race telemetry server."""

__version__ = "0.1.0"
