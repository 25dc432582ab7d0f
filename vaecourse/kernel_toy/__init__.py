"""The optimal decoder and encoders of a β-VAE on a kernel toy, found by iterating their fixed-point equations.

With a data set of n points xᵢ (the empirical distribution), a flexible Gaussian decoder and a
latent discretised into grid points z_b with prior masses π_b, the stationary points of
E_q[−‖x − g(z)‖²/(2β)] − KL(q(z|x) ‖ π) satisfy (Rezende & Viola 2018, §3, https://arxiv.org/abs/1810.00597;
Parnas & Shazman's report on it derives them step by step):

    decoder:  g(z_b) = Σᵢ q(z_b|xᵢ)·xᵢ / Σⱼ q(z_b|xⱼ)             (a convex combination of the data)
    encoder:  q(z_b|xᵢ) = π_b·exp(−‖xᵢ − g(z_b)‖²/(2β)) / Zᵢ      (a Boltzmann distribution, temperature β)

Here β stands for σ²·β_KL (decoder variance times the KL weight); σ² = 1 in the toy. Iterating the
two equations is coordinate ascent on that objective. Everything is NumPy float64 in the log
domain, so tiny β never underflows: the decoder weights wᵢ(b) = q(z_b|xᵢ)/Σⱼ q(z_b|xⱼ) are a softmax.

The rate splits as E_x KL(q(z|x) ‖ π) = I(x; z) + KL(q̄ ‖ π), q̄ = (1/n)·Σᵢ q(z|xᵢ) the encoders' marginal (Hoffman &
Johnson 2016, "ELBO surgery", http://approximateinference.org/accepted/HoffmanJohnson2016.pdf): exact on the grid
(``FixedPoint.mutual_info``, ``FixedPoint.marginal_kl``), and by Monte Carlo for a VAE with Gaussian encoders
(``rate_split``).
"""

from .fixed_points import (
    FixedPoint,
    LatentGrid,
    Step,
    anneal,
    covariance,
    critical_beta,
    curvature,
    decoder_step,
    decoder_weights,
    distortion,
    elbo,
    encoder_step,
    equal_mass_labels,
    far_mass,
    first_transition,
    fixed_point,
    kernel_smoother,
    kl_to_prior,
    latent_grid,
    log_partition,
    nearest_data_distance,
    partition_decoder,
    random_partition_labels,
    region_masses,
    sq_dists,
    toy_points,
    transitions,
    update,
)
from .pictures import beta_frame, beta_widget, data_canvas, partition_image, point_colors, resize_nearest
from .rate import RateSplit, binary_kl, mixture_log_density, pairwise_gaussian_log_density, rate_split

__all__ = [
    "LatentGrid",
    "latent_grid",
    "sq_dists",
    "encoder_step",
    "decoder_weights",
    "decoder_step",
    "update",
    "Step",
    "FixedPoint",
    "region_masses",
    "distortion",
    "kl_to_prior",
    "fixed_point",
    "anneal",
    "covariance",
    "critical_beta",
    "curvature",
    "transitions",
    "first_transition",
    "kernel_smoother",
    "log_partition",
    "nearest_data_distance",
    "far_mass",
    "toy_points",
    "equal_mass_labels",
    "random_partition_labels",
    "partition_decoder",
    "elbo",
    "pairwise_gaussian_log_density",
    "mixture_log_density",
    "RateSplit",
    "rate_split",
    "binary_kl",
    "point_colors",
    "partition_image",
    "data_canvas",
    "resize_nearest",
    "beta_frame",
    "beta_widget",
]
