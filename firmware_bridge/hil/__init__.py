"""Hardware-in-the-loop tools: serial byte recordings read back, cut, merged and exported; a tap
that records what a host sees; a replayer that answers a host from a recording; the comparer; and
their one command line, `python -m firmware_bridge.hil` (docs/hil.md).

`recordings.py` (a recording as frames), `summary.py` (per-channel frame summary, timed serve),
`tap.py` (SerialTap), `replayer.py` (SensorReplayer), `compare.py` (compare_host_streams), `cli.py`
(the subcommands).
"""
