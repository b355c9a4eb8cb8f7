"""The run folder's format, read and written by both sides: the runner (forgetting/runs/), which
writes run folders, and the sweep store (forgetting/tables/), which reads them into tables.

- folders.py: the name of every file in a run folder and a sweep folder;
- identity.py: the config hash, and which config a folder holds and whether it finished;
- claims.py: the claim a process holds on a run folder while it trains it;
- schema.py: what metrics.json holds, and the check a reader makes of it.

It imports only forgetting/core/, so both sides import it without a circle.
"""
