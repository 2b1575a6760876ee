"""The objectives as functions of the model's outputs: the self-critical loss and baselines, the penalty's targets."""

import torch

from captioning.model import objectives


def test_the_self_critical_loss_is_the_advantage_weighted_log_likelihood_of_the_words_up_to_eos():
    log_probs = torch.log(torch.tensor([[0.5, 0.25, 0.1, 0.0], [0.2, 0.4, 1.0, 1.0]])).clamp(min=-50)
    log_probs = log_probs.masked_fill(torch.tensor([[0, 0, 0, 1], [0, 0, 0, 0]], dtype=torch.bool), 0.0)
    log_probs.requires_grad_(True)
    tokens = torch.tensor([[5, 6, 2, 0], [7, 8, 9, 2]])  # <eos> = 2 ends each; <pad> = 0 after it
    advantages = torch.tensor([1.5, -0.5])
    loss = objectives.self_critical(log_probs, tokens, advantages, pad_id=0)
    # By hand: 7 words scored (3 + 4), each -advantage x log p.
    words = [(1.5, 0.5), (1.5, 0.25), (1.5, 0.1), (-0.5, 0.2), (-0.5, 0.4), (-0.5, 1.0), (-0.5, 1.0)]
    expected = -sum(advantage * torch.log(torch.tensor(p)) for advantage, p in words) / 7
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert log_probs.grad[0, 3] == 0  # the <pad> after <eos> takes no gradient
    torch.testing.assert_close(log_probs.grad[0, :3], torch.full((3,), -1.5 / 7))


def test_the_mean_of_others_baseline_leaves_each_sample_out_and_the_greedy_one_is_the_greedy_reward():
    rewards = torch.tensor([[1.0, 2.0, 6.0], [0.0, 0.0, 3.0]])
    expected = torch.tensor([[4.0, 3.5, 1.5], [1.5, 1.5, 0.0]])
    torch.testing.assert_close(objectives.self_critical_baseline(rewards, None, "mean_of_others"), expected)
    greedy = torch.tensor([0.5, 2.0])
    baseline = objectives.self_critical_baseline(rewards, greedy, "greedy")
    torch.testing.assert_close(baseline, torch.tensor([[0.5, 0.5, 0.5], [2.0, 2.0, 2.0]]))


def test_the_papers_attention_penalty_pushes_each_regions_coverage_towards_one():
    attention = torch.tensor([[[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.25, 0.25, 0.25, 0.25]]])  # (1, 3, 4)
    scored = torch.tensor([[True, True, False]])  # two words: the third row is padding
    coverage = torch.tensor([0.8, 0.8, 0.2, 0.2])
    expected = 2.0 * ((1 - coverage) ** 2).mean()
    torch.testing.assert_close(objectives.attention_penalty(attention, scored, 2.0, "one"), expected)


def test_the_at_most_one_penalty_charges_only_regions_looked_at_more_than_once_in_all():
    moving = torch.tensor([[[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1]]])  # (1, 2, 4): coverage 0.8, 0.8, 0.2, 0.2
    scored = torch.ones(1, 2, dtype=torch.bool)
    assert objectives.attention_penalty(moving, scored, 2.0, "at_most_one").item() == 0.0
    staring = torch.tensor([[[0.7, 0.1, 0.1, 0.1], [0.7, 0.1, 0.1, 0.1]]])  # coverage 1.4, 0.2, 0.2, 0.2
    expected = torch.tensor(2.0 * 0.4**2 / 4)
    torch.testing.assert_close(objectives.attention_penalty(staring, scored, 2.0, "at_most_one"), expected)


def test_a_target_of_length_over_regions_would_train_exactly_as_the_papers_target():
    # Why `attention_target` offers no T / R: the coverages sum to T, so that penalty differs from the paper's
    # by a constant per caption, and its gradients are the paper's (float64, through the softmax).
    logits = torch.randn(3, 6, 49, dtype=torch.float64, generator=torch.Generator().manual_seed(0), requires_grad=True)
    scored = torch.ones(3, 6, dtype=torch.bool)
    scored[1, 2:] = False
    attention = logits.softmax(-1)
    mask = scored.unsqueeze(2).double()
    coverage = (attention * mask).sum(1)  # (3, 49)
    share = mask.sum(1) / 49  # (3, 1): T / R
    (by_length,) = torch.autograd.grad(((share - coverage) ** 2).mean(), logits, retain_graph=True)
    (by_one,) = torch.autograd.grad(objectives.attention_penalty(attention, scored, 1.0, "one"), logits)
    torch.testing.assert_close(by_length, by_one, rtol=1e-12, atol=1e-15)
