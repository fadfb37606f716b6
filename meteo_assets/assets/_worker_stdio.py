"""Imported by the clean worker's fork server only (`ahead.py` preloads it there): the server's
standard streams, which its workers inherit, go to /dev/null.

Otherwise the fork server, which outlives the run's process by the half second its interpreter takes
to wind down, would hold the run's stdout and stderr open: whoever reads a run's output to its end
(`dagster asset materialize … | tee`, a benchmark) would wait for it. The worker has nothing to
say: a failure there comes back as None, and the step then raises it with its context.
"""

import os

_null = os.open(os.devnull, os.O_RDWR)
for _stream in (0, 1, 2):
    os.dup2(_null, _stream)
os.close(_null)
