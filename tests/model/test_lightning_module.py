import torch

from captioning.model.lightning_module import CaptioningModule
from captioning.model.teacher_forcing import teacher_forced
from captioning.vocabulary import SPECIAL_TOKENS


class TinyEncoder(torch.nn.Module):
    """Stands in for the ResNet-50 where only the decoder matters."""

    feature_dim = 8
    weights = None
    random_init_seed = 0


def make_module(attention_reg: float) -> CaptioningModule:
    torch.manual_seed(0)
    vocabulary = [*SPECIAL_TOKENS, "a", "red", "circle"]
    return CaptioningModule(
        TinyEncoder(), vocabulary, embed_dim=8, hidden_dim=8, attention_dim=8, dropout=0.0, attention_reg=attention_reg
    ).eval()


def test_loss_ignores_padding():
    module = make_module(0.0)
    features = torch.randn(2, 4, 8)
    captions = torch.tensor([[1, 4, 5, 2, 0, 0], [1, 4, 6, 5, 6, 2]])
    loss, words, _ = module.caption_loss(features, captions)
    alone, alone_words, _ = module.caption_loss(features[:1], captions[:1, :4])
    assert words == 3 + 5 and alone_words == 3
    mixed = (loss * words - alone * alone_words) / (words - alone_words)
    assert torch.isclose(mixed, module.caption_loss(features[1:], captions[1:])[0], atol=1e-5)


def test_doubly_stochastic_penalty_is_added_with_its_lambda():
    features = torch.randn(2, 4, 8)
    captions = torch.tensor([[1, 4, 5, 2, 0], [1, 4, 6, 5, 2]])
    plain, _, no_penalty = make_module(0.0).caption_loss(features, captions)
    regularised_module = make_module(2.0)
    cross_entropy, _, penalty = regularised_module.caption_loss(features, captions)
    inputs = captions[:, :-1].masked_fill(captions[:, :-1] == 2, 0)  # <eos> is never an input
    _, attention = teacher_forced(regularised_module.decoder, features, inputs)
    mask = (captions[:, 1:] != 0).unsqueeze(2).float()
    expected = ((1 - (attention * mask).sum(dim=1)) ** 2).mean()
    assert no_penalty == 0 and torch.isclose(cross_entropy, plain)  # the reported loss stays cross-entropy
    assert torch.isclose(penalty, 2.0 * expected, atol=1e-6) and expected > 0


def test_per_caption_losses_are_each_caption_scored_alone():
    module = make_module(0.0)
    features = torch.randn(3, 4, 8)
    captions = torch.tensor([[1, 4, 5, 2, 0, 0], [1, 4, 6, 5, 6, 2], [1, 6, 2, 0, 0, 0]])  # sorted by nothing
    losses, words = module.caption_losses(features, captions)
    for row, length in enumerate((3, 5, 2)):
        alone, alone_words, _ = module.caption_loss(features[row : row + 1], captions[row : row + 1, : length + 1])
        assert words[row] == alone_words == length
        assert torch.isclose(losses[row], alone * length, atol=1e-5)
