"""Stop training at a wall-clock time, so that a run ends as at any end: exported, then validated."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class StopAt(pl.Callback):
    """Ends training after the first step that finishes at or past ``deadline`` (seconds since the epoch).

    Lightning's ``max_time`` counts training time only; a machine lent for minutes also spends them
    starting processes, compiling and validating. A job that must be done by a time (a GPU round's
    command limit) stops here instead of being killed, so its last steps are exported and validated.
    """

    def __init__(self, deadline: float):
        self.deadline = deadline

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        late = time.time() >= self.deadline
        if trainer.world_size > 1:  # clocks differ: one rank late, all stop (Lightning syncs should_stop per epoch only)
            late = trainer.strategy.reduce_boolean_decision(late, all=False)
        if late and not trainer.should_stop:
            trainer.should_stop = True
            if trainer.is_global_zero:
                print(f"attncomp-train: stopping at step {trainer.global_step}: the --stop_at time has come", flush=True)
