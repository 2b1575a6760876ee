import pytest
import torch
from torchvision.models import ResNet50_Weights, ResNet101_Weights, ResNet152_Weights
from torchvision.models._api import WeightsEnum

from captioning.errors import CheckpointError, EncoderWeightsUnavailableError
from captioning.model.checkpoint import checkpoint_data_config, load_captioner
from captioning.model.encoder import ResNet50Encoder, ResNetEncoder, encoder_identity
from captioning.model.lightning_module import CaptioningModule
from captioning.vocabulary import SPECIAL_TOKENS

WEIGHTS = {"resnet50": ResNet50_Weights, "resnet101": ResNet101_Weights, "resnet152": ResNet152_Weights}


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


@pytest.mark.parametrize("arch", ["resnet50", "resnet101", "resnet152"])
def test_every_arch_gives_grid_by_grid_regions_of_2048_features_at_any_image_size(arch):
    encoder = ResNetEncoder(None, arch=arch, grid=14, image_size=64)
    assert encoder.identity == f"{arch}:random(seed=0):grid=14x14"
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feature_map = encoder.body(images)  # (2, 2048, 2, 2): a 64 px image's own grid
        regions = encoder(images)  # (2, 196, 2048)
    assert feature_map.shape == (2, 2048, 2, 2) and regions.shape == (2, 196, 2048) and encoder.regions == 196
    assert not any(parameter.requires_grad for parameter in encoder.parameters())


def test_a_14x14_grid_spreads_each_cell_of_a_smaller_feature_map_over_its_block_of_regions():
    encoder = ResNetEncoder(None, grid=14, image_size=64)
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feature_map = encoder.body(images)[0]  # (2048, 2, 2)
        regions = encoder(images)[0].reshape(14, 14, 2048)  # row-major regions, as the figures read them
    for row, column in [(0, 0), (3, 10), (13, 13), (9, 2)]:
        torch.testing.assert_close(regions[row, column], feature_map[:, row // 7, column // 7])


def test_a_7x7_grid_at_224_pixels_is_the_resnets_own_grid_and_keeps_its_cache_name():
    encoder = ResNetEncoder(None, grid=7, image_size=224)
    images = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = encoder.body(images).flatten(2).transpose(1, 2)  # (1, 49, 2048), no pooling at all
        torch.testing.assert_close(encoder(images), expected)
    # The names of earlier versions, which key the feature caches users already have.
    assert encoder.identity == "resnet50:random(seed=0)"
    assert encoder_identity("IMAGENET1K_V1") == "resnet50:IMAGENET1K_V1"


def test_encoders_of_other_archs_grids_or_sizes_have_other_identities():
    identities = {
        encoder_identity("IMAGENET1K_V1"),
        encoder_identity("IMAGENET1K_V1", arch="resnet101"),
        encoder_identity("IMAGENET1K_V1", arch="resnet152"),
        encoder_identity("IMAGENET1K_V1", grid=14),
        encoder_identity("IMAGENET1K_V1", image_size=256),  # 8x8 pooled to 7x7: not the 8x8 of earlier versions
    }
    assert len(identities) == 5


@pytest.mark.parametrize("arch", ["resnet101", "resnet152"])
def test_weights_are_checked_against_the_chosen_arch(arch, monkeypatch):
    with pytest.raises(EncoderWeightsUnavailableError, match=f"arch={arch}: use one of IMAGENET1K_V1, IMAGENET1K_V2"):
        ResNetEncoder(weights="IMAGENET_BEST", arch=arch)

    def offline(self, *args, **kwargs):
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(WeightsEnum, "get_state_dict", offline)
    with pytest.raises(EncoderWeightsUnavailableError) as error:
        ResNetEncoder(weights="IMAGENET1K_V2", arch=arch)
    file_name = WEIGHTS[arch].IMAGENET1K_V2.url.rsplit("/", 1)[-1]  # that arch's file, not ResNet-50's
    assert arch in file_name and file_name in str(error.value) and "model.encoder.weights=null" in str(error.value)


def old_checkpoint(image_size: int | None) -> tuple[dict, CaptioningModule]:
    """A checkpoint as versions before arch, grid and image_size were saved wrote it."""
    torch.manual_seed(0)
    vocabulary = [*SPECIAL_TOKENS, "a", "red", "circle"]
    module = CaptioningModule(ResNetEncoder(None, image_size=image_size or 224), vocabulary, embed_dim=8, hidden_dim=8)
    data = {"_target_": "captioning.data.datamodule.CaptionDataModule", "root": "data/shapes"}
    checkpoint = {
        "hyper_parameters": dict(module.hparams),
        "state_dict": {name: value for name, value in module.state_dict().items() if not name.startswith("encoder.")},
        "encoder": {"weights": None, "random_init_seed": 0},
        "run_config": {"data": {**data, "image_size": image_size} if image_size else data},
    }
    return checkpoint, module


def test_a_checkpoint_from_before_the_encoder_choices_loads_as_the_resnet50_it_was_trained_on():
    checkpoint, trained = old_checkpoint(image_size=None)
    loaded = load_captioner(checkpoint)
    assert (loaded.encoder.arch, loaded.encoder.grid, loaded.encoder.image_size) == ("resnet50", 7, 224)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), trained.state_dict().values()))

    # A run of the debug data.image_size=64: its 2x2 features, unpooled, at 64 px, and data without image_size.
    checkpoint, _ = old_checkpoint(image_size=64)
    loaded = load_captioner(checkpoint)
    assert (loaded.encoder.grid, loaded.encoder.image_size, loaded.encoder.identity) == (
        2,
        64,
        "resnet50:random(seed=0)",
    )
    assert "image_size" not in checkpoint_data_config(checkpoint)
    assert loaded.encoder(torch.randn(1, 3, 64, 64)).shape == (1, 4, 2048)


def test_a_checkpoint_of_another_encoder_is_refused_with_the_settings_to_use():
    checkpoint, module = old_checkpoint(image_size=None)  # this module: ResNet-50, 7x7, 224 px
    checkpoint["encoder"] = {"weights": None, "random_init_seed": 0, "arch": "resnet101", "grid": 14, "image_size": 256}
    with pytest.raises(CheckpointError) as error:
        module.load_weights(checkpoint)
    assert "model.encoder.arch=resnet101 model.encoder.grid=14 model.encoder.image_size=256" in str(error.value)
    checkpoint["encoder"].update(arch="resnet50", grid=7)  # the same features at another size: still another input
    with pytest.raises(CheckpointError, match="at 256 px, this run uses resnet50:random\\(seed=0\\) at 224 px"):
        module.load_weights(checkpoint)
