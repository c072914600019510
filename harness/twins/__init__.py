"""Rehearsal of a deploy on twins of the fleet's hosts (docs/rehearsal.md).

- `worktrees`: the base and head commits checked out side by side (git worktree, removed on
  every exit path);
- `plan`: what the head would deploy, asked of the head tree's own `ci/` scripts;
- `observations`: one host's observed result and the verdict it leads to;
- `report`: every host's result as Markdown (a job summary) and JSON (an artifact);
- `observe`: reading those observations off a NixOS machine through the harness's probes;
- `rehearse`: the orchestration, over any fleet with the `TwinFleet` interface.

This package uses the harness's core modules; nothing below it imports it (only the CLI does).
"""
