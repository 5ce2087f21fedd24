"""Prometheus metrics of the service (prometheus_client, one registry per app)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self):
        self.registry = r = CollectorRegistry()
        self.requests = Counter("ctl_requests", "HTTP requests by route and status", ["route", "status"], registry=r)
        self.latency = Histogram("ctl_request_seconds", "Request latency by route", ["route"], registry=r,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.batch_size = Histogram("ctl_batch_size", "Images per scene-tower call", registry=r,
                                    buckets=(1, 2, 4, 8, 16, 32, 64))
        self.queue_depth = Gauge("ctl_queue_depth", "Requests waiting for or in a tower call", registry=r)
        self.generation = Gauge("ctl_index_generation", "Loaded catalog index generation", registry=r)
        self.model_version = Gauge("ctl_model_version", "Loaded scene tower version", registry=r)
        self.reloads = Counter("ctl_index_reloads", "Index generation loads by result (loaded, refused)",
                               ["result"], registry=r)
        # A client that hangs up is not our error: counted here (and as status 499, like nginx), never as a 500.
        self.client_disconnects = Counter("ctl_client_disconnects", "Requests whose client hung up before the answer",
                                          ["route"], registry=r)
        self.open_connections = Gauge("ctl_open_connections", "Open client connections", registry=r)
        self.connections_closed = Counter(
            "ctl_connections_closed", "Connections the server closed by reason (head_timeout, body_timeout, "
            "evicted, refused, linger_timeout, shutdown)", ["reason"], registry=r)
        self.accept_errors = Counter("ctl_accept_errors", "Failed accept() calls (out of file descriptors)",
                                     registry=r)
