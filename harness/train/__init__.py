"""The compiled program, and nothing else: no config objects, no Hydra, no files.

`make_train(parts, settings) -> Trainer`: parts (model, method, schedule, teachers) come from the
planner (harness.run.plan), settings are the run's static choices. Modules: losses (per-task
loss, metric, target scaling, distillation), optim (direction and learning rate), schedules
(active tasks and masking policy), batches (a step's batch and teacher outputs), gradients (one
forward pass, the method's inputs, the combined gradient), update (the masked per-group
optimiser), evaluation, loop (the step and the scan).
"""
from harness.train.loop import INIT, make_train
from harness.train.parts import Carry, Parts, Settings, Trainer

__all__ = ["INIT", "Carry", "Parts", "Settings", "Trainer", "make_train"]
