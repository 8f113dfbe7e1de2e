"""The published register of data sharing agreements (DEA 2017 Part 5 codes of practice).

`entries` reads an administration's register from its loaded bundle into typed entries with
the DEA register's columns; `publish` writes a register as a self-contained HTML document,
CSV and JSON. Both are pure functions over a loaded bundle, so the CLI, a node's console and
tests share them; the register check itself is the bundle's Rego, asked through
`gateway.policy.tools.register_problems`.
"""
