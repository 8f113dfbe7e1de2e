"""Coverage-guided fuzzing of the gRPC edge: caller requests and peer envelopes.

`python -m fuzz <target>` runs one target under atheris; `fuzz.targets` holds the targets as
plain functions of bytes, so that the test suite can replay them without atheris.
docs/fuzzing.md says what each target drives and which properties it checks.
"""

# The libFuzzer dictionary each target mutates with, in fuzz/dictionaries/.
DICTIONARIES = {
    "get_record": "request.dict",
    "stream_records": "request.dict",
    "identifier": "identifier.dict",
    "relay": "jws.dict",
    "assertion": "jws.dict",
    "receipt": "jws.dict",
}
