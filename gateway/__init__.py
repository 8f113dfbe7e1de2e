"""The Concordat gateway node: authenticate, validate, route, decide, fetch, minimise, audit."""
