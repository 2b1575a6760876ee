import itertools
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from captioning.model import objectives, teacher_forcing
from captioning.model.decoder import AttentionDecoder
from captioning.model.teacher_forcing import teacher_forced
from captioning.model.tutorial import tutorial_forward


def small_decoder(vocab_size: int = 20, feature_dim: int = 32) -> AttentionDecoder:
    torch.manual_seed(0)
    return AttentionDecoder(vocab_size, feature_dim, embed_dim=16, hidden_dim=24, attention_dim=12, dropout=0.0)


def generated_words(decoder: AttentionDecoder) -> list[int]:
    """The ids generation may emit: every word but `<pad>`, `<bos>` and `<unk>`."""
    return [
        token for token in range(decoder.vocab_size) if token not in (decoder.pad_id, decoder.bos_id, decoder.unk_id)
    ]


def allowed_log_softmax(decoder: AttentionDecoder, logits: torch.Tensor) -> torch.Tensor:
    """log_softmax over the words generation may emit (the others at -inf)."""
    banned = torch.ones(decoder.vocab_size, dtype=torch.bool)
    banned[generated_words(decoder)] = False
    return logits.masked_fill(banned, float("-inf")).log_softmax(dim=-1)


def teacher_forced_log_probs(decoder: AttentionDecoder, features: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Log-probability (B, L) of each word of `tokens` (B, L) given the words before it, by teacher forcing
    (the training step), over the words generation may emit; 0 where `tokens` is `<pad>`."""
    inputs = torch.cat([torch.full((len(tokens), 1), decoder.bos_id), tokens[:, :-1]], dim=1)  # (B, L)
    with torch.no_grad():
        logits, _ = teacher_forced(decoder, features, inputs)  # (B, L, V)
    log_probs = allowed_log_softmax(decoder, logits).gather(2, tokens.unsqueeze(2)).clamp(min=-1e30).squeeze(2)
    return log_probs.masked_fill(tokens == decoder.pad_id, 0.0)


def eos_decoder(eos_bias: float) -> AttentionDecoder:
    """A float64 decoder in eval mode (no dropout) whose captions end after a few words: `<eos>` is made
    likelier by `eos_bias`, and `<pad>` is never generated (it would end the caption for teacher forcing)."""
    decoder = small_decoder(vocab_size=12).double().eval()
    with torch.no_grad():
        decoder.output.bias[decoder.pad_id] = -30.0
        decoder.output.bias[decoder.eos_id] += eos_bias
    return decoder


def caption_lengths(decoder: AttentionDecoder, tokens: torch.Tensor) -> list[int]:
    """Words of each generated caption (B, L), `<eos>` included."""
    return (tokens != decoder.pad_id).sum(dim=1).tolist()


def bigram_decoder(transitions: torch.Tensor) -> AttentionDecoder:
    """A float64 decoder whose next word depends on the last word alone, with the probabilities of the rows of
    `transitions` (V, V): each word's embedding is one-hot, the LSTM forgets at once and holds tanh(tanh(3))
    in that word's unit, attention and features add nothing."""
    vocab_size = transitions.size(0)
    decoder = small_decoder(vocab_size=vocab_size).double().eval()
    hidden_dim, embed_dim = decoder.hidden_to_gates.in_features, decoder.embedding.embedding_dim
    with torch.no_grad():
        for parameter in decoder.parameters():
            parameter.zero_()
        decoder.embedding.weight[:, :vocab_size] = torch.eye(vocab_size)
        gate_bias = decoder.word_to_gates.bias.view(4, hidden_dim)  # input, forget, candidate, output
        gate_bias[0], gate_bias[1], gate_bias[3] = 30.0, -30.0, 30.0
        candidate = decoder.word_to_gates.weight.view(4, hidden_dim, embed_dim)[2]  # (H, E)
        candidate[:vocab_size, :vocab_size] = 3.0 * torch.eye(vocab_size)
        decoder.output.weight[:, :vocab_size] = transitions.log().T / math.tanh(math.tanh(3.0))
    return decoder


def reference_beam_search(
    decoder: AttentionDecoder, features: torch.Tensor, beam_size: int, max_length: int, length_penalty: float
) -> list[list[int]]:
    """The best hypothesis of each image (its tokens up to `<eos>`) by a plain beam search: one image at a time,
    every step run, log-probabilities by teacher forcing, ranked by summed log-probability / length ** penalty."""
    best = []
    for image in features.split(1):
        beam = [([], 0.0, False)]  # (tokens, summed log-probability, ended)
        for _ in range(max_length + 1):
            candidates = [hypothesis for hypothesis in beam if hypothesis[2]]
            for tokens, score, ended in beam:
                if ended:
                    continue
                with torch.no_grad():
                    logits, _ = teacher_forced(decoder, image, torch.tensor([[decoder.bos_id, *tokens]]))
                log_probs = allowed_log_softmax(decoder, logits[0, -1]).tolist()
                candidates += [
                    (tokens + [token], score + log_probs[token], token == decoder.eos_id)
                    for token in generated_words(decoder)
                ]
            candidates.sort(key=lambda hypothesis: hypothesis[1] / len(hypothesis[0]) ** length_penalty, reverse=True)
            beam = candidates[:beam_size]
        best.append(beam[0][0])
    return best


def test_teacher_forcing_shapes_and_attention_over_49_regions():
    decoder = small_decoder()
    features = torch.randn(3, 49, 32) * 300  # the scale of a random ResNet's features
    captions = torch.randint(3, 20, (3, 7))

    logits, attention = teacher_forced(decoder, features, captions)

    assert logits.shape == (3, 7, 20)
    assert attention.shape == (3, 7, 49)  # 49 weights per word
    torch.testing.assert_close(attention.sum(dim=2), torch.ones(3, 7))
    assert (attention >= 0).all() and torch.isfinite(logits).all()


def test_generation_returns_attention_rows_that_sum_to_one():
    decoder = small_decoder().eval()
    generation = decoder.beam_search(torch.randn(4, 49, 32), beam_size=3, max_length=6)
    assert generation.tokens.shape[0] == 4 and generation.tokens.shape[1] <= 7
    assert generation.attention.shape == (*generation.tokens.shape, 49)
    torch.testing.assert_close(generation.attention.sum(dim=2), torch.ones(generation.tokens.shape))


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_beam_size_one_equals_greedy(length_penalty):
    decoder = small_decoder().eval()
    features = torch.randn(5, 9, 32)
    greedy = decoder.greedy(features, max_length=8)
    beam = decoder.beam_search(features, beam_size=1, max_length=8, length_penalty=length_penalty)
    assert torch.equal(greedy.tokens, beam.tokens)
    torch.testing.assert_close(greedy.attention, beam.attention)


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_batched_beam_search_equals_one_image_at_a_time(length_penalty):
    decoder = small_decoder().eval()
    features = torch.randn(4, 9, 32)
    batched = decoder.beam_search(features, beam_size=3, max_length=8, length_penalty=length_penalty)
    for image in range(4):
        alone = decoder.beam_search(features[image : image + 1], 3, max_length=8, length_penalty=length_penalty)
        length = alone.tokens.shape[1]
        assert torch.equal(batched.tokens[image, :length], alone.tokens[0])
        assert (batched.tokens[image, length:] == decoder.pad_id).all()


def test_a_beam_as_wide_as_every_caption_finds_the_most_likely_caption():
    # 4 words that can follow (all but <pad>, <bos> and <unk>) and at most 3 of them: 64 hypotheses at most, all
    # kept by a beam of 64, so the search is exhaustive and must return what enumerating every caption finds.
    decoder = small_decoder(vocab_size=7).double().eval()
    words = generated_words(decoder)
    captions = [list(caption) for length in (1, 2, 3) for caption in itertools.product(words, repeat=length)]
    captions = [c for c in captions if decoder.eos_id not in c[:-1] and (c[-1] == decoder.eos_id or len(c) == 3)]
    torch.manual_seed(3)
    features = torch.randn(4, 9, 32, dtype=torch.float64) * 3
    found = decoder.beam_search(features, beam_size=64, max_length=2).tokens
    for image in range(4):
        padded = torch.tensor([caption + [decoder.pad_id] * (3 - len(caption)) for caption in captions])
        image_features = features[image : image + 1].expand(len(captions), -1, -1)
        likelihoods = teacher_forced_log_probs(decoder, image_features, padded).sum(dim=1)
        best = captions[int(likelihoods.argmax())]
        assert found[image, : len(best)].tolist() == best
        assert (found[image, len(best) :] == decoder.pad_id).all()


def test_greedy_log_probs_equal_teacher_forcing_on_the_generated_words():
    decoder = eos_decoder(eos_bias=0.3)
    torch.manual_seed(1)
    features = torch.randn(6, 9, 32, dtype=torch.float64) * 10
    generation = decoder.greedy(features, max_length=8)
    lengths = caption_lengths(decoder, generation.tokens)
    assert min(lengths) < 9 and len(set(lengths)) > 2  # some end with <eos> early, at different steps

    assert generation.log_probs.shape == generation.tokens.shape
    assert (generation.log_probs[generation.tokens == decoder.pad_id] == 0).all()
    expected = teacher_forced_log_probs(decoder, features, generation.tokens)
    torch.testing.assert_close(generation.log_probs, expected, rtol=1e-12, atol=1e-12)


def test_beam_search_log_probs_equal_teacher_forcing_on_the_best_hypothesis():
    decoder = eos_decoder(eos_bias=0.0)
    torch.manual_seed(1)
    features = torch.randn(6, 9, 32, dtype=torch.float64) * 10
    generation = decoder.beam_search(features, beam_size=3, max_length=8)
    lengths = caption_lengths(decoder, generation.tokens)
    assert min(lengths) < 9 and len(set(lengths)) > 1  # one ends with <eos> early, the others run to the end

    # the words' log-probabilities followed their hypothesis through every reordering of the beams
    expected = teacher_forced_log_probs(decoder, features, generation.tokens)
    torch.testing.assert_close(generation.log_probs, expected, rtol=1e-12, atol=1e-12)


def test_decoder_overfits_a_handful_of_captions():
    decoder = small_decoder(vocab_size=12)
    features = torch.randn(4, 9, 32) * 50
    # <bos> w w w <eos> <pad>: four different captions, one per image
    captions = torch.tensor([[1, 4, 5, 6, 2, 0], [1, 7, 8, 2, 0, 0], [1, 4, 9, 10, 11, 2], [1, 11, 10, 5, 2, 0]])
    optimizer = torch.optim.Adam(decoder.parameters(), lr=1e-2)
    for _ in range(150):
        logits, _ = teacher_forced(decoder, features, captions[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), captions[:, 1:].flatten(), ignore_index=0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    generated = decoder.eval().greedy(features, max_length=6).tokens
    for row, caption in zip(generated.tolist(), captions[:, 1:].tolist()):
        assert row[: caption.index(2) + 1] == caption[: caption.index(2) + 1]


def test_fast_path_loss_equals_the_per_step_reference_loop():
    decoder = small_decoder(vocab_size=30).eval()
    features = torch.randn(4, 49, 32) * 100
    captions = torch.randint(3, 30, (4, 9))
    fast, _ = teacher_forced(decoder, features, captions)
    reference = tutorial_forward(decoder, features, captions)
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


def test_generation_step_shares_each_images_features_with_its_adjacent_beams():
    decoder = small_decoder().double().eval()
    images, beams = 3, 4
    features = torch.randn(images, 9, 32, dtype=torch.float64) * 10
    with torch.no_grad():
        inputs, (hidden, cell) = decoder._start_generation(features, beams)  # regions (B, R, 4H), (B*K, H)
    region_gates, projected = inputs.regions, inputs.projected
    # Every beam its own hypothesis: its image's initial state, moved apart, and its own last word.
    hidden = (hidden + torch.randn(images * beams, hidden.size(1))).tanh()  # (B*K, H)
    cell = cell + torch.randn(images * beams, cell.size(1))  # (B*K, H)
    tokens = torch.randint(3, decoder.vocab_size, (images * beams,))  # (B*K,)

    def step(region_gates: torch.Tensor, projected: torch.Tensor) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            logits, attention, (new_hidden, new_cell) = decoder.step(
                decoder.word_gates(tokens), (hidden, cell), replace(inputs, regions=region_gates, projected=projected)
            )
        return logits, attention, new_hidden, new_cell

    shared = step(region_gates, projected)  # (B, R, ...): one copy per image
    copied = step(region_gates.repeat_interleave(beams, dim=0), projected.repeat_interleave(beams, dim=0))
    for name, with_shared, with_copies in zip(("logits", "attention", "hidden", "cell"), shared, copied):
        torch.testing.assert_close(with_shared, with_copies, rtol=1e-12, atol=1e-12, msg=name)
    # The comparison tells pairings apart: copies in image order 0 1 2 0 1 2 ... give other logits.
    tiled = step(region_gates.repeat(beams, 1, 1), projected.repeat(beams, 1, 1))
    assert not torch.allclose(tiled[0], copied[0], rtol=1e-3, atol=1e-3)


def captions_of_different_lengths(rows: int, length: int, lengths: list[int], vocab_size: int = 30) -> torch.Tensor:
    """Input captions (rows, length): `<bos>` and random words up to each of `lengths`, then `<pad>`."""
    inputs = torch.randint(3, vocab_size, (rows, length))
    inputs[:, 0] = 1  # <bos>
    for row, caption_length in enumerate(lengths):
        inputs[row, caption_length:] = 0
    return inputs


def gradients(decoder: AttentionDecoder) -> dict[str, torch.Tensor]:
    return {name: parameter.grad.clone() for name, parameter in decoder.named_parameters()}


def test_batched_weight_gradients_equal_the_plain_loops_on_captions_of_different_lengths():
    decoder = small_decoder(vocab_size=30).double()
    features = torch.randn(5, 7, 32, dtype=torch.float64) * 10
    inputs = captions_of_different_lengths(5, 9, [9, 4, 7, 1, 4])  # unsorted, with ties and a lone <bos>
    targets = torch.randint(3, 30, (5, 9)).masked_fill(inputs == decoder.pad_id, decoder.pad_id)

    decoder.zero_grad()
    outputs = teacher_forcing.packed(decoder, features, inputs)
    loss, words = objectives.cross_entropy(outputs.logits, targets.flatten()[outputs.positions], decoder.pad_id)
    assert words == 9 + 4 + 7 + 1 + 4
    loss.backward()
    packed_loss, packed_gradients = loss.detach(), gradients(decoder)

    decoder.zero_grad()
    logits = tutorial_forward(decoder, features, inputs)  # every step for every caption, plain autograd
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=decoder.pad_id)
    loss.backward()
    torch.testing.assert_close(packed_loss, loss.detach(), rtol=1e-12, atol=0)
    for name, gradient in gradients(decoder).items():
        assert gradient.abs().max() > 0 or name == "attention.score.bias", name  # softmax ignores that bias
        torch.testing.assert_close(packed_gradients[name], gradient, rtol=1e-10, atol=1e-12, msg=name)


def test_padded_fixed_shape_path_equals_the_packed_path_with_a_partial_batch():
    decoder = small_decoder(vocab_size=30).double()
    features = torch.randn(5, 7, 32, dtype=torch.float64) * 10
    inputs = captions_of_different_lengths(5, 9, [9, 4, 7, 1, 4])
    targets = torch.randint(3, 30, (5, 9)).masked_fill(inputs == decoder.pad_id, decoder.pad_id)

    def loss_and_gradients(run, targets) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        decoder.zero_grad()
        logits, attention = run()  # (B, T, V), (B, T, R)
        loss, _ = objectives.cross_entropy(logits.flatten(0, 1), targets.flatten(), decoder.pad_id)
        (loss + (attention**2).sum()).backward()  # the attention has a gradient of its own too
        return loss.detach(), attention.detach(), gradients(decoder)

    packed = loss_and_gradients(lambda: teacher_forced(decoder, features, inputs), targets)
    # Fixed shapes: 12 captions long, and 3 blank rows make a batch of 8, as the last batch of an epoch.
    # The features are normalised before the blank rows join, as the training step does.
    normalised = F.pad(decoder.normalise(features), (0, 0, 0, 0, 0, 3))  # (8, 7, 32)
    padded_inputs = F.pad(inputs, (0, 3, 0, 3), value=decoder.pad_id)  # (8, 12)
    padded_targets = F.pad(targets, (0, 3, 0, 3), value=decoder.pad_id)
    padded = loss_and_gradients(lambda: teacher_forcing.padded(decoder, normalised, padded_inputs), padded_targets)

    torch.testing.assert_close(padded[0], packed[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(padded[1][:5, :9], packed[1], rtol=1e-12, atol=1e-15)
    assert (padded[1][5:] == 0).all() and (padded[1][:, 9:] == 0).all()  # nothing attended for padding
    for name, gradient in packed[2].items():
        torch.testing.assert_close(padded[2][name], gradient, rtol=1e-10, atol=1e-12, msg=name)


def test_beam_search_stops_once_the_best_hypothesis_of_every_image_has_ended():
    decoder = small_decoder().eval()
    with torch.no_grad():
        decoder.output.bias[decoder.eos_id] = 20.0  # <eos> first, by far: beam 0 ends at step 1
    generation = decoder.beam_search(torch.randn(3, 9, 32), beam_size=3, max_length=8)
    # beams 1 and 2 chose other words and are still running; they could only lose score, so the search stops
    assert generation.tokens.tolist() == [[decoder.eos_id]] * 3


def test_length_penalty_turns_the_caption_that_ends_at_once_into_a_real_one():
    # After <bos>: <eos> 0.3, or three first words 0.22 each, each of which starts a sure caption (0.9 a word)
    transitions = torch.full((12, 12), 1e-3, dtype=torch.float64)
    transitions[:, 0] = 1e-12  # <pad>
    transitions[1, 2], transitions[1, 3:6] = 0.3, 0.22
    for word in range(3, 7):
        transitions[word, word + 1] = 0.9  # 3 -> 4 -> 5 -> 6 -> 7
    transitions[7, 2] = 0.9  # 7 -> <eos>
    decoder = bigram_decoder(transitions / transitions.sum(dim=1, keepdim=True))
    features = torch.randn(3, 9, 32, dtype=torch.float64)
    assert caption_lengths(decoder, decoder.greedy(features, max_length=8).tokens) == [1, 1, 1]

    # log 0.3 = -1.2 beats "5 6 7 <eos>" (log 0.22 + 3 log 0.9 = -1.8) unless the score is divided by its length
    plain = decoder.beam_search(features, beam_size=10, max_length=8)
    assert plain.tokens.tolist() == [[decoder.eos_id]] * 3
    for length_penalty in (0.5, 1.0):
        normalised = decoder.beam_search(features, beam_size=10, max_length=8, length_penalty=length_penalty)
        assert min(caption_lengths(decoder, normalised.tokens)) > 1
        assert (normalised.tokens == decoder.eos_id).sum(dim=1).tolist() == [1, 1, 1]  # each ends with <eos>


@pytest.mark.parametrize("length_penalty", [-0.5, 0.0, 0.5, 1.0])
def test_stopping_early_returns_the_best_hypothesis_of_a_search_run_to_the_end(length_penalty):
    decoder = eos_decoder(eos_bias=0.4)
    torch.manual_seed(1)
    features = torch.randn(6, 9, 32, dtype=torch.float64) * 10
    generation = decoder.beam_search(features, beam_size=3, max_length=8, length_penalty=length_penalty)
    found = [[token for token in row if token != decoder.pad_id] for row in generation.tokens.tolist()]
    assert found == reference_beam_search(decoder, features, 3, 8, length_penalty)
    assert generation.tokens.size(1) < 9  # it did stop early
    expected = teacher_forced_log_probs(decoder, features, generation.tokens)
    torch.testing.assert_close(generation.log_probs, expected, rtol=1e-12, atol=1e-12)


def test_sampling_draws_each_word_with_its_probability_and_reports_its_log_probability():
    # After <bos>: word 4 with 0.6, word 5 with 0.3, <eos> with 0.1; both words are then followed by <eos>.
    transitions = torch.full((7, 7), 1e-9, dtype=torch.float64)
    transitions[1, 4], transitions[1, 5], transitions[1, 2] = 0.6, 0.3, 0.1
    transitions[4, 2] = transitions[5, 2] = transitions[2, 2] = transitions[6, 2] = 1.0
    decoder = bigram_decoder(transitions / transitions.sum(dim=1, keepdim=True))
    features = torch.randn(2, 9, 32, dtype=torch.float64)
    torch.manual_seed(0)
    sampled = decoder.sample(features, samples=2000, max_length=5)
    assert sampled.tokens.shape[0] == 4000
    first = sampled.tokens[:, 0]
    shares = [(first == token).double().mean().item() for token in (4, 5, 2)]
    assert shares == pytest.approx([0.6, 0.3, 0.1], abs=0.03)
    # Each drawn word's log-probability is the teacher-forced one; nothing is drawn after <eos>.
    expected = teacher_forced_log_probs(decoder, features.repeat_interleave(2000, dim=0), sampled.tokens)
    torch.testing.assert_close(sampled.log_probs, expected, rtol=1e-9, atol=1e-9)
    assert (sampled.tokens[first == 2, 1:] == decoder.pad_id).all()
    entropy = -sum(p * math.log(p) for p in (0.6, 0.3, 0.1))
    torch.testing.assert_close(
        sampled.entropy[:, 0], torch.full((4000,), entropy, dtype=torch.float64), atol=1e-6, rtol=0
    )


def test_sampling_at_a_low_temperature_is_greedy_and_its_log_probabilities_carry_gradients():
    decoder = eos_decoder(eos_bias=0.3)
    torch.manual_seed(1)
    features = torch.randn(6, 9, 32, dtype=torch.float64) * 10
    greedy = decoder.greedy(features, max_length=8)
    cold = decoder.sample(features, samples=3, max_length=8, temperature=1e-4)
    length = greedy.tokens.size(1)
    assert torch.equal(cold.tokens[:, :length], greedy.tokens.repeat_interleave(3, dim=0))
    sampled = decoder.sample(features, samples=3, max_length=8)
    sampled.log_probs.sum().backward()
    assert decoder.output.weight.grad.abs().sum() > 0


def test_unk_is_never_generated_unless_allowed():
    decoder = small_decoder().eval()
    with torch.no_grad():
        decoder.output.bias[decoder.unk_id] = 30.0  # by far the likeliest word
    features = torch.randn(3, 9, 32)
    for generate in (
        lambda **allow: decoder.greedy(features, 6, **allow),
        lambda **allow: decoder.beam_search(features, 3, 6, **allow),
        lambda **allow: decoder.sample(features, 2, 6, **allow),
    ):
        assert not (generate().tokens == decoder.unk_id).any()
        assert (generate(allow_unk=True).tokens[:, 0] == decoder.unk_id).all()


def test_blocking_trigrams_stops_a_caption_that_loops():
    # "4 5 6 4 5 6 ...": a loop that greedy decoding and beam search follow to the maximum length.
    transitions = torch.full((9, 9), 1e-6, dtype=torch.float64)
    transitions[1, 4] = transitions[4, 5] = transitions[5, 6] = transitions[6, 4] = 1.0
    transitions[6, 2] = 0.1  # <eos> after 6 is the next best choice
    decoder = bigram_decoder(transitions / transitions.sum(dim=1, keepdim=True))
    features = torch.randn(2, 9, 32, dtype=torch.float64)
    for generate in (decoder.greedy, lambda *args, **kw: decoder.beam_search(features, 3, *args[1:], **kw)):
        looping = generate(features, 12).tokens[0].tolist()
        assert looping[:6] == [4, 5, 6, 4, 5, 6] and decoder.eos_id not in looping
        blocked = [token for token in generate(features, 12, block_trigrams=True).tokens[0].tolist() if token]
        trigrams = list(zip(blocked, blocked[1:], blocked[2:]))
        assert len(trigrams) == len(set(trigrams)) and blocked[-1] == decoder.eos_id
