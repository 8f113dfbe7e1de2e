"""Citizens see who used their data: every exchange about them, from all four nodes' logs.

A citizen's token (their administration's citizen identity provider) carries their verified
identifiers. Their node checks the token, the identifiers asked about and the citizen's rate
limit (`lookup.py`), searches its own audit log by its own keyed subject hashes (`search.py`)
and asks every other node to search its log the same way over mutual TLS (`peers.py`,
`service.py`). Each node leaves out what it may not disclose yet: an agreement's disclosure
delay or a live case an operator holds (`disclosure.py`, `holds.py`); the asking node drops
the other node's record of a withheld exchange too. Every lookup and every search leaves one
audit entry. docs/citizens.md tells the whole story.
"""
