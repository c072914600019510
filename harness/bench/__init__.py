"""The engine's speed on the micro image: `python -m harness.bench` (`__main__.py`), its fleet,
console and checkpoint figures (`fleets.py`, `console.py`, `checkpoints.py`) and the VM suite it
times under xdist (`suite/`)."""
