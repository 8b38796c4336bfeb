"""One training step: gradient accumulation, robust-loss masking, NaN/Inf guard, EMA.

Pure function of (state, batch); the loop jits it with explicit shardings and a donated
state. The step's randomness is `fold_in(seed, step)`, so a resumed run draws the same
numbers as an uninterrupted one. Gradients are taken with respect to the trainable leaves
only; the frozen ones enter the loss as constants.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from talkjax import trees
from talkjax.train.state import TrainState


def make_train_step(task, tx: optax.GradientTransformation, schedule, train_config, seed: int):
  accum = int(train_config.grad_accum)
  threshold = float(train_config.robust_loss_threshold)
  ema_decay = float(train_config.ema_decay)
  base_rng = jax.random.PRNGKey(seed)

  def summed_loss(params, frozen, batch, rng):
    per_example, metrics = task.loss(trees.merge(params, jax.lax.stop_gradient(frozen)), batch, rng)
    per_example = per_example.astype(jnp.float32)
    if threshold > 0:
      # Robust training: examples whose loss jumps above the threshold are noisy data.
      keep = jax.lax.stop_gradient(per_example <= threshold)
    else:
      keep = jnp.ones_like(per_example, bool)
    kept = jnp.sum(keep)
    total = jnp.sum(jnp.where(keep, per_example, 0.0))
    return total, (kept, jnp.sum(per_example), metrics)

  grad_fn = jax.value_and_grad(summed_loss, has_aux=True)

  def train_step(state: TrainState, batch):
    rng = jax.random.fold_in(base_rng, state.step)
    if accum == 1:
      (total, (kept, raw_sum, metrics)), grads = grad_fn(state.params, state.frozen, batch, rng)
    else:
      micro = jax.tree.map(lambda x: x.reshape((accum, x.shape[0] // accum) + x.shape[1:]), batch)

      def body(carry, inputs):
        i, mb = inputs
        (t, (k, r, m)), g = grad_fn(state.params, state.frozen, mb, jax.random.fold_in(rng, i))
        acc_g, acc_t, acc_k, acc_r = carry
        return (jax.tree.map(jnp.add, acc_g, g), acc_t + t, acc_k + k, acc_r + r), m

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      init = (zeros, jnp.zeros(()), jnp.zeros((), jnp.int32), jnp.zeros(()))
      (grads, total, kept, raw_sum), metrics = jax.lax.scan(
          body, init, (jnp.arange(accum), micro))
      metrics = jax.tree.map(jnp.mean, metrics)

    batch_size = jax.tree.leaves(batch)[0].shape[0]
    denom = jnp.maximum(kept, 1).astype(jnp.float32)
    loss = total / denom
    grads = jax.tree.map(lambda g: g / denom, grads)
    updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
    new_params = optax.apply_updates(state.params, updates)
    grad_norm = optax.global_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

    # The NaN/Inf guard: a non-finite step leaves parameters and optimizer untouched.
    pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)
    params = pick(new_params, state.params)
    opt_state = pick(new_opt_state, state.opt_state)
    ema = state.ema_params
    if ema is not None:
      ema = pick(jax.tree.map(lambda e, p: ema_decay * e + (1 - ema_decay) * p, ema, new_params), ema)
    masked = batch_size - kept
    new_state = TrainState(
        step=state.step + 1, params=params, frozen=state.frozen, opt_state=opt_state, ema_params=ema,
        nonfinite_streak=jnp.where(finite, 0, state.nonfinite_streak + 1),
        nonfinite_total=state.nonfinite_total + (~finite).astype(jnp.int32),
        masked_total=state.masked_total + masked)
    out = {"loss": loss, "loss_unmasked": raw_sum / batch_size, "grad_norm": grad_norm,
           "lr": schedule(state.step), "masked": masked, "finite": finite, **metrics}
    return new_state, out

  return train_step
