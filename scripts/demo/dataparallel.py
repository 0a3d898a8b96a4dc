"""Data-parallel training on one machine for the demo training scripts (issue 8).

N processes (gloo, one thread each) take the same optimizer step: each runs the training loop on
its share of the batch, the gradients are averaged (optimizer_step), rank 0's clock sets the
learning rate and the stop (budget_steps), and the parameters are re-broadcast now and then
(resync) so that rounding cannot make the copies drift. Rank 0 alone keeps the EMA, logs and
saves. On 2 cores, 2 processes train ~1.3x the steps per minute of one (the batch is split, the
per-step overheads are not).
"""
import os
import socket
import time

import torch


def run(train, procs, *args):
    """train(rank, *args) in `procs` processes (a rendezvous on a free local port), or here if 1.
    Tensors in args are shared with the children, read-only by contract: each process must copy
    what it trains (the models), or every step would be applied `procs` times to one storage."""
    if procs <= 1:
        train(0, *args)
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(s.getsockname()[1])
    torch.multiprocessing.spawn(train, args=args, nprocs=procs)


def init(rank, procs):
    torch.set_num_threads(1)
    if procs > 1:
        torch.distributed.init_process_group("gloo", rank=rank, world_size=procs)


def finish(procs):
    if procs > 1:
        torch.distributed.destroy_process_group()


def budget_fraction(t_elapsed, budget, procs):
    """Rank 0's elapsed share of the time budget, the same number in every process."""
    clock = torch.tensor([t_elapsed / budget])
    if procs > 1:
        torch.distributed.broadcast(clock, 0)
    return float(clock)


def budget_steps(t_start, minutes, max_steps, procs):
    """Yields (step, frac) for step = 0, 1, ...: frac is budget_fraction of a budget of `minutes`
    counted from t_start (the clock of the loop starts here); stops once it reaches 1 or after
    max_steps steps (0: no limit), in every process at the same step."""
    t0 = time.time()
    budget = minutes * 60 - (t0 - t_start)
    step = 0
    while True:
        frac = budget_fraction(time.time() - t0, budget, procs)
        if frac >= 1 or (max_steps and step >= max_steps):
            return
        yield step, frac
        step += 1


def optimizer_step(opt, params, procs, steps_done):
    """After loss.backward(): the gradients averaged over the processes and clipped to norm 1, the
    optimizer step, and (resync) now and then rank 0's parameters to all."""
    average_grads(params, procs)
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    resync(params, procs, steps_done)


def average_grads(params, procs):
    """All-reduce the gradients as one flat buffer, so every process takes the same optimizer step."""
    if procs <= 1:
        return
    for p in params:
        if p.grad is None:  # a parameter this batch did not reach
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = torch.cat([g.flatten() for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= procs
    torch.nn.utils.vector_to_parameters(flat, grads)


def resync(params, procs, step, every=1000):
    """Every `every` steps, rank 0's parameters to all: the updates are identical, this keeps
    floating-point rounding from drifting the copies apart."""
    if procs <= 1 or step % every:
        return
    flat = torch.nn.utils.parameters_to_vector(params).detach()
    torch.distributed.broadcast(flat, 0)
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(flat, params)
