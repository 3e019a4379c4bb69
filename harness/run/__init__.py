"""The host side of a job or a sweep: plan (build every part once, run every static check),
execute (jit(vmap) over seeds and dynamic values, sharded over devices, checkpointed), write
(one Record per run), sweep (one job, or a sweep batched by compiled program)."""
