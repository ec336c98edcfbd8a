"""The learner service: what `learner/serve.py` runs.

One module per job: `config` (the TOML + CLI config), `keys` (CURVE key pairs), `store` (the durable
real-transition store), `ingest` (decode, validate, dedup, store, ACK), `sessions` (per-robot link
state and HELLO checks), `publisher` (latest policy, pushed by heartbeat), `trainer` (background
H2O updates, sim workers, exports), `status` (metrics file, status line, plots), `server` (the
ROUTER loop that ties them together), `replay` (feed a recording in as if a robot were connected).
"""
