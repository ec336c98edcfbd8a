"""The learner service: what `learner/serve.py` runs (docs/service.md has the module table).

One module per job: `config` (TOML + CLI config), `keys` (CURVE key pairs), `wire` (protocol
messages, one error type), `store` (the durable real-transition store), `ingest` (dedup, append,
feed to the trainer), `sessions` (per-robot link state, HELLO checks), `publisher` (latest policy),
`server` (the ROUTER loop), `tasks` (task dims without torch), `trainer` + `simworkers`
(background training, exports, checkpoints), `status` (metrics, status line, plots), `app` (the
service assembled), `client` + `replay` (feed a recording in as if a robot were connected).
"""
