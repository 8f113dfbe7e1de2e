"""Concordat's benchmarks: what the gateway adds, as ratios to bare gRPC measured in the same run.

python -m bench                      # the whole suite; results in bench/results/
python -m bench --only bare_unary    # one measure
python -m bench --smoke              # tiny counts, as the test suite runs it
"""
