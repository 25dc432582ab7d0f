"""Unit tests for vaecourse.resnet: shapes, the paper's channel plan, bad input, a net that learns."""

import pytest
import torch

from vaecourse.resnet import ResNetDecoder, ResNetEncoder, count_parameters, make_resnet_vae, resnet_channels


@pytest.mark.parametrize("size", [16, 64])
def test_shapes_round_trip(size):
    torch.manual_seed(0)
    vae = make_resnet_vae((3, size, size), latent_dim=6, width=2)
    with torch.no_grad():
        out = vae(torch.rand(2, 3, size, size))
    assert out.mu.shape == (2, 6) and out.logvar.shape == (2, 6)
    assert out.x_hat.shape == (2, 3, size, size)
    assert float(out.x_hat.min()) >= 0 and float(out.x_hat.max()) <= 1


def test_channels_follow_the_paper_at_128():
    # paper 001: five residual levels with 32, 64, 128, 256, 512 channels on 128x128 CelebA
    assert resnet_channels((3, 128, 128), 32) == [32, 64, 128, 256, 512]
    assert resnet_channels((3, 32, 32), 8) == [8, 16, 32]
    enc = ResNetEncoder((3, 64, 64), 10, width=4)
    assert enc.feature_shape == (32, 4, 4)


def test_width_scales_parameters():
    small = count_parameters(make_resnet_vae((3, 32, 32), 8, width=4))
    big = count_parameters(make_resnet_vae((3, 32, 32), 8, width=8))
    assert 2.5 < big / small < 4.5  # convolutions grow ~ width^2


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="power of two"):
        ResNetEncoder((3, 28, 28), 4)
    with pytest.raises(ValueError, match="norm"):
        ResNetEncoder((3, 32, 32), 4, norm="layer")
    enc = ResNetEncoder((3, 32, 32), 4, width=4)
    with pytest.raises(ValueError, match="N×3×32×32"):
        enc(torch.rand(2, 1, 32, 32))
    dec = ResNetDecoder((3, 32, 32), 4, width=4)
    with pytest.raises(ValueError, match="N×4"):
        dec(torch.rand(2, 5))


def test_autoencoder_learns_a_small_batch():
    torch.manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(16, 3, 4, 4), size=16, mode="bilinear")  # smooth colours
    vae = make_resnet_vae((3, 16, 16), latent_dim=8, width=4, variational=False)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = (vae(x).x_hat - x).abs().mean()
        losses.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.5 * losses[0]
