"""Fitting an MTP as MLIP-2's ``mlp train`` does (mlip-formats.md §4, mlip-cli.md ``train``).

:class:`Trainer` runs the whole procedure on one MPI rank's share of the training set
and reports through a ``log`` callable (the original's stdout lines; only rank 0
prints):

1. untrained potential: random radial coefficients ``5e-7 U(-1, 1)`` (then coefficient
   ``min(mu, R-1)`` of each radial function redrawn), printing ``Random initialization of
   radial coefficients``, or with ``init_params="same"`` MLIP-2's loader defaults;
2. untrained potential, ``max_iter > 0``, no ``skip_preinit``: TrainLinear, Rescale,
   ``Pre-training started``, BFGS limited to 75 iterations, Rescale, ``Pre-training
   ended``;
3. optionally ``update_mindist``: ``min_dist = 0.99 * (smallest distance in the set)``;
4. ``max_iter > 0``: the header lines, BFGS (:meth:`Trainer.bfgs`), TrainLinear,
   Rescale.

BFGS loop (MLIP-2's ``MTPR_trainer::Train``): outside a line search the optimiser is
reset to the current (last evaluated) point, every 50 accepted steps (including step 0)
TrainLinear refits the linear coefficients first; each evaluation is followed by a BFGS
iteration whose step is reduced (x0.25) while the first parameter would move by more
than 0.5.  Each accepted point prints ``BFGS iter k: f=<loss>`` (``*`` first when the
loss increased).  Stops: |Δloss| < 1e-13; at every 50th step, relative decrease since
step 50m+1 below ``bfgs_conv_tol`` and below the previous 50-step decrease; ``max_iter``
steps.

The parameters after training are the last evaluated (= last accepted) point.
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from ..errors import ConfigError
from ..potential.mtp import MTP
from .bfgs import BFGS
from .linear import fmt6, fmt15, least_squares, rescale, train_linear
from .loss import Loss, LossWeights, TrainingData, efs_merged
from .parallel import SerialComm

#: BFGS iterations of the pre-training of an untrained potential
PRETRAIN_ITERATIONS = 75
INIT_PARAMS = ("random", "same")


@dataclasses.dataclass
class TrainOptions:
    """Options of ``mlp train`` (see mlip-cli.md)."""

    weights: LossWeights = dataclasses.field(default_factory=LossWeights)
    max_iter: int = 1000
    bfgs_conv_tol: float = 1e-3
    curr_pot_name: str | None = None
    init_params: str = "random"
    skip_preinit: bool = False
    update_mindist: bool = False
    seed: int | None = None
    linear: bool = False
    num_threads: int = 1

    def __post_init__(self):
        if self.init_params not in INIT_PARAMS:
            raise ConfigError("--init-params should be 'random' or 'same'")


class Model:
    """The potential being trained: its parameters and an :class:`MTP` built for them.

    The kernel tables depend on ``scaling`` and ``min_dist``; changing those rebuilds it.
    """

    def __init__(self, params, num_threads=1):
        self.params = params
        self.num_threads = num_threads
        self.mtp = MTP(params, num_threads=num_threads)

    def set_scaling(self, scaling):
        self.params.scaling = float(scaling)
        self.mtp = MTP(self.params, num_threads=self.num_threads)

    def set_min_dist(self, min_dist):
        self.params.min_dist = float(min_dist)
        self.mtp = MTP(self.params, num_threads=self.num_threads)

    def theta(self):
        return self.mtp.get_params()

    def set_theta(self, theta):
        self.mtp.set_params(theta)


def random_radial_init(params, rng):
    """MLIP-2's random initialisation of the radial coefficients (in place).

    Every coefficient ``5e-7 * U(-1, 1)``, then for each pair and radial function the
    coefficient ``min(mu, R-1)`` is drawn again.  Species and moment coefficients get the
    loader default 1e-3.
    """
    params.init_default_coeffs()
    c, k, r = params.species_count, params.radial_funcs_count, params.radial_basis_size
    rad = params.radial_coeffs.reshape(c * c, k, r)
    for pair in range(c * c):
        for mu in range(k):
            rad[pair, mu, :] = 5e-7 * rng.uniform(-1.0, 1.0, size=r)
            rad[pair, mu, min(mu, r - 1)] = 5e-7 * rng.uniform(-1.0, 1.0)
    params.radial_coeffs = rad.reshape(c, c, k, r)


class Interrupted(Exception):
    """Raised out of :meth:`Trainer.run` on Ctrl-C; ``params`` hold the last accepted point."""


class Trainer:
    """Fit ``params`` (modified in place) to this rank's configurations.

    Parameters
    ----------
    params : MTPParams
    cfgs : list of Configuration
        This rank's training configurations.
    options : TrainOptions
    comm : SerialComm or MPIComm
    log : callable
        Receives each stdout line (called on every rank; pass a no-op on ranks > 0).
    save : callable, optional
        ``save(path, params)`` used for ``curr_pot_name`` (rank 0 only).
    progress : callable, optional
        ``progress(message)`` for stderr progress lines (rate-limited by the caller).
    """

    def __init__(self, params, cfgs, options, comm=None, log=print, save=None, progress=None):
        self.params = params
        self.options = options
        self.comm = comm or SerialComm()
        self.log = log
        self.save = save
        self.progress = progress
        self.was_trained = params.is_trained
        self._prec15 = False            # MLIP-2's cout precision becomes 15 at TrainLinear
        self.history = []               # (phase, step, loss)
        self.accepted_theta = None
        self.data = None
        self.loss = None
        self.model = None
        self._cfgs = cfgs
        self.n_train_linear = 0
        self.t_start = time.monotonic()

    # ---------------------------------------------------------------- setup
    def _initialise(self):
        p, o = self.params, self.options
        if not p.is_trained:
            if o.linear:
                # fixed radial functions of the linear MTP: f_mu ~ Q_mu (the loader defaults)
                p.init_default_coeffs()
            elif o.init_params == "random":
                self.log("Random initialization of radial coefficients")
                if self.comm.rank == 0:
                    random_radial_init(p, np.random.default_rng(o.seed))
                else:
                    p.init_default_coeffs()
                p.set_params(self.comm.bcast(p.get_params()))
            else:
                p.init_default_coeffs()

    def _prepare(self):
        self.model = Model(self.params, self.options.num_threads)
        self.data = TrainingData(self._cfgs, self.params.max_dist)
        self.data.check_types(self.params.species_count)
        self.loss = Loss(self.data, self.options.weights, self.comm, self.options.num_threads)

    def close(self):
        if self.loss is not None:
            self.loss.close()

    def num(self, x):
        """A number as MLIP-2's ``cout`` prints it at this point of the run."""
        return fmt15(x) if self._prec15 else fmt6(x)

    # ---------------------------------------------------------------- pieces
    def train_linear(self):
        self._prec15 = True
        self.n_train_linear += 1
        train_linear(self.model.mtp, self.data, self.options.weights, self.comm,
                     self.options.num_threads)

    def rescale(self):
        self._prec15 = True
        rescale(self.model, self.data, self.options.weights, self.comm,
                self.options.num_threads, log=self.log)

    def bfgs(self, max_steps, phase="train"):
        """MLIP-2's BFGS training loop (see module docstring)."""
        o = self.options
        self.log("MTPR parallel training started" if self.comm.is_mpi
                 else "MTPR serial(?!?) training started")
        model = self.model
        x = model.theta()
        opt = BFGS(len(x))
        num_step = 0
        loss_prev = 9e99
        linf = 9e99
        reduced_by = 0.0
        converge = False
        linesearch = False
        self.accepted_theta = x.copy()
        last_progress = time.monotonic()
        while not converge:
            if not linesearch:
                opt.set_x(x)
                if num_step % 50 == 0:
                    self.train_linear()
                    x = model.theta()
                    opt.set_x(x)
                if o.curr_pot_name and self.comm.rank == 0 and self.save is not None:
                    self.save(o.curr_pot_name, self.params)
            x = self.comm.bcast(opt.x.copy())
            model.set_theta(x)
            f, g = self.loss(model.mtp)
            opt.iterate(f, g)
            while abs(opt.x[0] - x[0]) > 0.5:
                opt.reduce_step(0.25)
            linesearch = opt.in_linesearch
            if linesearch:
                continue
            self.accepted_theta = x.copy()
            if loss_prev < f:
                self.log("*")
            if abs(loss_prev - f) < 1e-13:
                converge = True
                self.log("BFGS ended due to small decr. for 1 iteration")
            loss_prev = f
            self.log(f"BFGS iter {num_step}: f={fmt6(f)}")
            self.history.append((phase, num_step, f))
            num_step += 1
            if num_step % 50 == 1:
                linf = f
            if num_step % 50 == 0:
                rel = (linf - f) / f
                if rel < o.bfgs_conv_tol and rel < reduced_by:
                    converge = True
                    self.log("BFGS ended due to small decr. in 50 iterations")
                reduced_by = rel
            if num_step >= max_steps:
                converge = True
                self.log("step limit reached")
            now = time.monotonic()
            if self.progress is not None and now - last_progress >= 5.0:
                last_progress = now
                self.progress(f"train: {phase} iteration {num_step}/{max_steps}, loss {f:.6g}, "
                              f"{self.loss.n_evals} evaluations, {now - self.t_start:.0f} s")
        self.log("MTPR training ended")

    # ---------------------------------------------------------------- driver
    def run(self):
        """The whole ``mlp train`` procedure (without the final error report)."""
        o = self.options
        self._initialise()
        self._prepare()
        try:
            if o.linear:
                self._run_linear()
                return
            if not self.was_trained and o.max_iter > 0 and not o.skip_preinit:
                self.train_linear()
                self.rescale()
                self.log("Pre-training started")
                self.bfgs(PRETRAIN_ITERATIONS, "pretrain")
                self.rescale()
                self.log("Pre-training ended")
            if o.update_mindist:
                md = self.comm.allreduce_min(self.data.min_dist())
                self.log(f"Found configuration with mindist={self.num(md)}, "
                         "MTP's mindist will be decreased")
                theta = self.model.theta()
                self.model.set_min_dist(0.99 * md)
                self.model.set_theta(theta)
            if o.max_iter > 0:
                w = o.weights
                self.log(f"BFGS iterations count set to {o.max_iter}")
                self.log(f"BFGS convergence tolerance set to {self.num(o.bfgs_conv_tol)}")
                if w.energy != 0 or w.force != 0 or w.stress != 0:
                    self.log(f"Energy weight: {self.num(w.energy)}")
                    self.log(f"Force weight: {self.num(w.force)}")
                    self.log(f"Stress weight: {self.num(w.stress)}")
                self.bfgs(o.max_iter, "train")
                self.train_linear()
                self.rescale()
        except KeyboardInterrupt:
            if self.accepted_theta is not None and self.model is not None:
                self.model.set_theta(self.accepted_theta)
            raise Interrupted() from None

    def _run_linear(self):
        """``--linear``: radial functions fixed, species + moment coefficients by least squares."""
        p = self.params
        xi, cond = least_squares(self.model.mtp, self.data, self.options.weights, self.comm,
                                 self.options.num_threads)
        c = p.species_count
        p.species_coeffs = xi[:c].copy()
        p.moment_coeffs = xi[c:].copy()
        self.model.mtp.update_coeffs()
        self.log(f"Linear fit of {len(xi)} coefficients (radial functions fixed): "
                 f"condition number = {fmt6(cond)}")
        self.linear_cond = cond


def error_monitor(mtp, data, comm=None, num_threads=1):
    """An :class:`~mlip_py.training.report.ErrorMonitor` of ``mtp`` on ``data`` (all ranks).

    Each configuration's figures are gathered on every rank and merged in global
    configuration order, so the report does not depend on the number of ranks.
    """
    from .report import ErrorMonitor

    comm = comm or SerialComm()
    energy, forces, virial = efs_merged(mtp, data, num_threads=num_threads)
    states = []
    for q, cfg in enumerate(data.cfgs):
        a0, a1 = data.atom_start[q], data.atom_start[q + 1]
        one = ErrorMonitor()
        one.add_values(cfg, energy[q], forces[a0:a1], virial[q])
        states.append(one.state())
    width = len(ErrorMonitor().state())
    states = np.array(states, dtype=np.float64).reshape(len(states), width)
    gathered = comm.allgather((data.global_index(comm), states))
    index = np.concatenate([g[0] for g in gathered])
    rows = np.concatenate([g[1].reshape(len(g[0]), width) for g in gathered])
    mon = ErrorMonitor()
    for q in np.argsort(index, kind="stable"):
        mon.merge_state(rows[q])
    return mon
