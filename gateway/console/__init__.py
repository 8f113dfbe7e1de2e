"""The operator console: a small web server (`concordat console`) showing the federation.

It reads what the nodes already publish: gRPC health over TLS, their Prometheus metrics
(`[metrics] listen`), the signed directory, the policy bundles' registers and the audit
meter, from the node configurations it is given (`readings.py`); renders plain HTML with no
asset from anywhere else (`pages.py`); and offers the citizen's view as a page of its own, a
form that calls TransparencyService.ListMyExchanges with a citizen's token (`server.py`).
docs/console.md tells the whole story.
"""
