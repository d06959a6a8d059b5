"""Typed keys for the application's state (aiohttp ``web.AppKey``).

One place that names every shared object, so handlers and contexts find
state by key instead of by globals or an Application subclass.
"""

from __future__ import annotations

import socket

from aiohttp import web

from ..broadcast.hub import Hub
from ..compute.runner import ComputeRunner
from ..config import Settings
from ..ingest.f1_source import F1Ingest
from ..ingest.parse_process import ParseProcess
from ..ingest.pipeline import Ingestor
from ..ingest.s3 import S3Poller
from ..ingest.udp import UdpSource
from ..loopwatch import LoopStats
from ..recording import Recorder
from ..ring import RingBuffer
from ..tracks import Track
from ..validate import Tables
from .lean_http import LeanStats

SETTINGS = web.AppKey("settings", Settings)
RING = web.AppKey("ring", RingBuffer)
TABLES = web.AppKey("tables", Tables)
INGESTOR = web.AppKey("ingestor", Ingestor)
HUB = web.AppKey("hub", Hub)
F1 = web.AppKey("f1", F1Ingest)
UDP = web.AppKey("udp", UdpSource)
UDP_SOCKET = web.AppKey("udp_socket", socket.socket)
PARSER = web.AppKey("parser", ParseProcess)
WEBSOCKETS = web.AppKey("websockets", set[web.WebSocketResponse])
COMPUTE = web.AppKey("compute", ComputeRunner)
TRACKS = web.AppKey("tracks", dict[str, Track])
LOOP_STATS = web.AppKey("loop_stats", LoopStats)
RECORDER = web.AppKey("recorder", Recorder)
S3 = web.AppKey("s3", S3Poller)
LEAN_HTTP = web.AppKey("lean_http", LeanStats)
