"""Development only: demo data, development keys and certificates, a development identity
provider, local federation state and synthetic identifiers.

Production code never imports this package (tests/test_contracts.py says so); `concordat up`,
`concordat token` and the test helpers in gateway/testing.py do.
"""
