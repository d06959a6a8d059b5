"""Broadcast: new rows from the ring -> encoded messages -> WebSocket clients."""
