"""The ELBO on a model whose evidence is exact: the linear-Gaussian model (probabilistic PCA).

Lesson 01 checks the two derivations of the bound numerically. In probabilistic PCA,
p(z) = N(0, I) and p(x|z) = N(Wz + b, σ²I), so log p(x) = log N(x; b, WWᵀ + σ²I) and the true
posterior p(z|x) is Gaussian, both in closed form. Any Gaussian q(z|x) then has an exact ELBO, an
exact KL(q ‖ p(z|x)), and Monte Carlo estimates of both to compare with. Gaussians are given by a
mean and a lower-triangular scale L (covariance LLᵀ); a diagonal q is ``diag_scale_tril(logvar)``.
Use float64 here: the identities are checked to 1e-10.
"""

from .estimators import (
    ESTIMATORS,
    GaussianEncoder,
    elbo_gradient_samples,
    elbo_loss,
    elbo_monte_carlo,
    exact_elbo_gradient,
    gradient_variance,
    importance_weighted_bound,
)
from .model import (
    LOG_2PI,
    LinearGaussian,
    check_samples,
    diag_scale_tril,
    gaussian_kl_full,
    kl_monte_carlo,
    log_normal,
    sample_normal,
)
from .pictures import (
    BLUE,
    BOUND_WIDGET_TITLE,
    ORANGE,
    RED,
    BoundTerms,
    bound_figure,
    bound_image,
    bound_numbers,
    bound_terms,
    bound_widget,
    figure_to_image,
    q_scale_2d,
)

__all__ = [
    "LOG_2PI",
    "diag_scale_tril",
    "log_normal",
    "sample_normal",
    "gaussian_kl_full",
    "kl_monte_carlo",
    "check_samples",
    "LinearGaussian",
    "elbo_monte_carlo",
    "importance_weighted_bound",
    "ESTIMATORS",
    "elbo_gradient_samples",
    "exact_elbo_gradient",
    "gradient_variance",
    "GaussianEncoder",
    "elbo_loss",
    "q_scale_2d",
    "BoundTerms",
    "bound_terms",
    "bound_figure",
    "BLUE",
    "RED",
    "ORANGE",
    "bound_image",
    "bound_numbers",
    "figure_to_image",
    "BOUND_WIDGET_TITLE",
    "bound_widget",
]
