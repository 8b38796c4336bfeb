"""Train state, optimizer, sharded step, loop and Orbax checkpoints; knows no model family."""
