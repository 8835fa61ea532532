"""The endpoint picker's gRPC face: Envoy's ext_proc protocol (endpoint picking and body-based model routing),
the pools it serves, health, TLS, Prometheus metrics, and the `poolgate picker` process (see docs/picker.md).

    exchange.py   one HTTP request's ext_proc stream (the protocol state machine)
    service.py    the grpc.aio ExternalProcessor and health servers, TLS key pairs
    pools.py      the served pools: state, scraper, scheduler, objectives, rewrites, models
    metrics.py    the Prometheus families (upstream names)
    app.py        discovery + pools + servers + metrics endpoint, run until a signal
    bench.py      the in-process ext_proc overhead benchmark
"""
