import pytest
import torch
from torchvision.models._api import WeightsEnum

from captioning.errors import EncoderWeightsUnavailableError
from captioning.model.encoder import ResNet50Encoder


def test_encoder_gives_7x7_grid_of_2048_features_and_stays_frozen():
    encoder = ResNet50Encoder(weights=None)
    encoder.train()
    assert not encoder.training and not any(module.training for module in encoder.modules())
    assert not any(parameter.requires_grad for parameter in encoder.parameters())
    with torch.no_grad():
        features = encoder(torch.randn(2, 3, 224, 224))
    assert features.shape == (2, 49, 2048)


def test_random_weights_are_reproducible():
    first, second = ResNet50Encoder(weights=None), ResNet50Encoder(weights=None)
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))
    assert first.identity == "resnet50:random(seed=0)"


def test_unavailable_weights_fail_at_once_saying_how_to_fix(monkeypatch, tmp_path):
    def offline(self, *args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(EncoderWeightsUnavailableError) as error:
        ResNet50Encoder(weights="IMAGENET1K_V1")
    message = str(error.value)
    assert "resnet50-0676ba61.pth" in message and "checkpoints" in message
    assert "model.encoder.weights=null" in message


def test_unknown_weights_name_lists_the_valid_ones():
    with pytest.raises(EncoderWeightsUnavailableError, match="IMAGENET1K_V2"):
        ResNet50Encoder(weights="IMAGENET_BEST")
