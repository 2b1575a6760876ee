"""The training step's paths (packed, padded to fixed shapes, replayed from a CUDA graph) train alike, and a
choice that would be ignored is refused."""

import functools

import pytest
import torch

from captioning.errors import ConfigError
from captioning.model.lightning_module import CaptioningModule
from captioning.model.teacher_forcing import TrainingPath
from captioning.vocabulary import SPECIAL_TOKENS

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class CachedFeaturesOnly(torch.nn.Module):
    feature_dim = 32
    weights = None
    random_init_seed = 0


def make_module(
    train_step: str,
    device: str = "cpu",
    dtype: torch.dtype = torch.float64,
    lr: float = 1e-3,
    compile_step: bool = False,
) -> CaptioningModule:
    """A small module; `padded`, which users cannot choose, is the graph's fixed-shape step run eagerly."""
    torch.manual_seed(0)
    vocabulary = [*SPECIAL_TOKENS, *(f"word{index}" for index in range(26))]
    module = CaptioningModule(
        CachedFeaturesOnly(),
        vocabulary,
        embed_dim=16,
        hidden_dim=24,
        attention_dim=12,
        dropout=0.0,
        max_caption_length=10,
        optimizer=functools.partial(torch.optim.Adam, lr=lr),
        scheduler=lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.1),
        gradient_clip_norm=0.5,  # small enough to clip
        train_step="packed" if train_step == "padded" else train_step,
        compile_step=compile_step,
    )
    if train_step == "padded":
        module.training_path = TrainingPath("padded", 10, module.vocabulary.pad_id)
    return module.to(device=device, dtype=dtype)


def epochs_of_batches(device: str, dtype: torch.dtype) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """Two epochs of batches of 4, 4 and a partial 3 captions of different lengths (up to 10 words)."""
    generator = torch.Generator().manual_seed(1)
    epochs = []
    for _ in range(2):
        batches = []
        for rows in (4, 4, 3):
            features = torch.randn(rows, 7, 32, generator=generator, dtype=torch.float64) * 10
            lengths = torch.randint(1, 11, (rows,), generator=generator)
            length = int(lengths.max()) + 2
            captions = torch.randint(len(SPECIAL_TOKENS), 30, (rows, length), generator=generator)
            captions[:, 0] = 1  # <bos>
            for row, words in enumerate(lengths.tolist()):
                captions[row, words + 1] = 2  # <eos>
                captions[row, words + 2 :] = 0
            batches.append((features.to(device, dtype), captions.to(device)))
        epochs.append(batches)
    return epochs


def train(module: CaptioningModule, epochs: list) -> tuple[list[float], dict[str, torch.Tensor]]:
    """The step of `training_step` and the epoch's scheduler step, without a Trainer."""
    optimizers = module.configure_optimizers()
    optimizer, scheduler = optimizers["optimizer"], optimizers["lr_scheduler"]["scheduler"]
    losses = []
    for batches in epochs:
        for features, captions in batches:
            cross_entropy, _, _ = module.compute_gradients(features, captions)
            optimizer.step()
            losses.append(cross_entropy.item())
        scheduler.step()  # on_train_epoch_end
        module.zero_grad()  # as Lightning does before validation: the gradients are set to None
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)  # two boundaries passed
    return losses, {name: tensor.detach().clone() for name, tensor in module.state_dict().items()}


def assert_same_training(reference: tuple, other: tuple, tolerance: float) -> None:
    torch.testing.assert_close(torch.tensor(other[0]), torch.tensor(reference[0]), rtol=tolerance, atol=tolerance)
    for name, tensor in reference[1].items():
        if name == "decoder.attention.score.bias":
            # The softmax ignores it: its gradient is rounding noise, which Adam scales to steps of lr size.
            continue
        torch.testing.assert_close(other[1][name], tensor, rtol=tolerance, atol=tolerance, msg=name)


def test_padded_steps_train_as_the_packed_steps_across_learning_rate_steps_and_partial_batches():
    epochs = epochs_of_batches("cpu", torch.float64)
    packed = train(make_module("packed"), epochs)
    padded = train(make_module("padded"), epochs)
    assert packed[1]["decoder.output.weight"].ne(make_module("packed").state_dict()["decoder.output.weight"]).any()
    assert_same_training(packed, padded, tolerance=1e-9)


def test_the_graph_step_needs_a_gpu():
    module = make_module("graph")
    with pytest.raises(Exception, match="model.train_step=graph needs a CUDA device"):
        module.compute_gradients(torch.randn(2, 7, 32, dtype=torch.float64), torch.ones(2, 4, dtype=torch.long))


def assert_trains_as_the_eager_packed_steps_on_the_gpu(module: CaptioningModule) -> None:
    """Two epochs of `module` (float32 on the GPU) end with the weights of the packed eager steps."""
    epochs = epochs_of_batches("cuda", torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = False
    packed = train(make_module("packed", "cuda", torch.float32), epochs)
    assert_same_training(packed, train(module, epochs), tolerance=1e-4)


@needs_cuda
def test_graph_steps_train_as_the_eager_packed_steps_on_the_gpu():
    graph_module = make_module("auto", "cuda", torch.float32)
    assert_trains_as_the_eager_packed_steps_on_the_gpu(graph_module)
    graphs = graph_module.training_path._graphs
    assert len(graphs) == 1  # the partial batches replayed the same graph
    assert graphs[next(iter(graphs))].graph is not None


@needs_cuda
def test_bf16_graph_steps_learn_on_the_gpu():
    epochs = epochs_of_batches("cuda", torch.float32)
    module = make_module("graph", "cuda", torch.float32, lr=1e-2)
    optimizer = module.configure_optimizers()["optimizer"]
    losses = []
    for _ in range(20):
        for features, captions in epochs[0]:
            with torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=False):
                cross_entropy, _, _ = module.compute_gradients(features, captions)
            optimizer.step()
            losses.append(cross_entropy.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) < 0.5 * sum(losses[:3])  # it memorises the three batches


@needs_cuda
def test_compiled_graph_steps_train_as_the_eager_packed_steps_on_the_gpu():
    compiled_module = make_module("graph", "cuda", torch.float32, compile_step=True)
    assert_trains_as_the_eager_packed_steps_on_the_gpu(compiled_module)


@pytest.mark.parametrize("train_step", ["padded", "fast"])
def test_a_path_users_cannot_choose_is_refused(train_step):
    with pytest.raises(ConfigError, match=f"model.train_step={train_step} is not one of auto, packed, graph"):
        CaptioningModule(CachedFeaturesOnly(), list(SPECIAL_TOKENS), train_step=train_step)


def test_compiling_is_refused_where_the_packed_path_would_ignore_it():
    module = make_module("auto", compile_step=True)
    with pytest.raises(ConfigError, match="model.compile_step=true compiles the padded step"):
        module.compute_gradients(torch.randn(2, 7, 32, dtype=torch.float64), torch.ones(2, 4, dtype=torch.long))
