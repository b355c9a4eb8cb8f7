"""The stability edge of the optimiser that runs: the largest eta*lambda for which it converges
on a quadratic.

Setting. SGD on the 1-D quadratic f(p) = lambda*p^2/2 (gradient g = lambda*p), learning rate
eta, momentum beta in [0, 1), dampening 0, no weight decay; h = eta*lambda. The arithmetic is
torch.optim.SGD's (forgetting/core/sgd.py): v <- beta*v + g, the first step's buffer being g
(the same as starting from v = 0). Along each Hessian eigenvector of a quadratic loss the
iteration decouples into this 1-D one, so the largest eigenvalue lambda_max sets the edge.

Plain SGD (beta = 0): p <- (1 - h) p; it converges iff |1 - h| < 1, i.e. 0 < h < 2.

Heavy ball (PyTorch form: v' = beta*v + lambda*p; p' = p - eta*v'):

    [p']   [1 - h   -eta*beta] [p]
    [v'] = [lambda   beta    ] [v]

trace 1 + beta - h, determinant (1 - h)*beta + h*beta = beta, so the characteristic
polynomial is

    P(mu) = mu^2 - (1 + beta - h) mu + beta.

Nesterov (PyTorch form: v' = beta*v + lambda*p; p' = p - eta*(lambda*p + beta*v')), i.e.
p' = (1 - h(1 + beta)) p - eta*beta^2 v:

    [p']   [1 - h(1 + beta)   -eta*beta^2] [p]
    [v'] = [lambda             beta      ] [v]

trace (1 + beta)(1 - h), determinant beta(1 - h(1 + beta)) + h*beta^2 = beta(1 - h), so

    P(mu) = mu^2 - (1 + beta)(1 - h) mu + beta(1 - h).

Both roots of a real monic quadratic mu^2 + a1*mu + a0 lie inside the unit circle iff
(Jury's test) |a0| < 1, P(1) > 0 and P(-1) > 0. A root can only leave the unit circle through
mu = 1 (P(1) = 0), mu = -1 (P(-1) = 0) or a complex pair of modulus 1 (|a0| = 1).

- Heavy ball: a0 = beta < 1 always; P(1) = h > 0 for h > 0; P(-1) = 2(1 + beta) - h. The
  boundary is P(-1) = 0, a root at mu = -1 (the iterate flips sign each step):
  h < 2(1 + beta) (3.8 at beta = 0.9).
- Nesterov: P(1) = h > 0; P(-1) = 1 + (1 + 2*beta)(1 - h) > 0 iff h < 1 + 1/(1 + 2*beta);
  |a0| = beta|1 - h| < 1 iff h < 1 + 1/beta, which is weaker. The boundary is again mu = -1:
  h < 2(1 + beta)/(1 + 2*beta) (1.357 at beta = 0.9). At beta = 0 every form gives 2.

Units. eta is the learning rate of the MEAN loss over a batch. Training here steps on the
SUMMED loss with a per-example LR and weight decay wd_per_example*batch_size, which is the same
update as the mean loss with eta = per-example LR * batch_size (`mean_loss_lr`) and weight
decay wd_per_example. L2 weight decay adds wd to every Hessian eigenvalue of the mean loss.
"""

from __future__ import annotations


def edge(momentum: float, nesterov: bool) -> float:
    """The largest eta*lambda (dimensionless) for which SGD converges on lambda*p^2/2:
    2 (momentum 0), 2(1 + beta) (heavy ball), 2(1 + beta)/(1 + 2*beta) (Nesterov)."""
    beta = float(momentum)
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    if nesterov:
        return 2.0 * (1.0 + beta) / (1.0 + 2.0 * beta)
    return 2.0 * (1.0 + beta)


def sharpness_ratio(lam_max: float, eta_mean: float, weight_decay: float, momentum: float,
                    nesterov: bool) -> float:
    """eta_mean*(lam_max + weight_decay)/edge(momentum, nesterov), dimensionless: 1 is the
    stability edge of the quadratic model. lam_max is the top Hessian eigenvalue of the mean
    loss (without weight decay), eta_mean the mean-loss LR, weight_decay the mean-loss L2
    coefficient (wd_per_example here)."""
    return eta_mean * (lam_max + weight_decay) / edge(momentum, nesterov)


def mean_loss_lr(per_example_lr: float, batch_size: int) -> float:
    """The mean-loss learning rate eta = per_example_lr * batch_size (the same SGD step as the
    summed loss with the per-example LR)."""
    return per_example_lr * batch_size
