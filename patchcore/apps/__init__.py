"""The front ends: the `patchcore` CLI, predict, the inspection service, feedback, the gate and the reports."""
