"""Constrained decoding under a label set: only valid labels come out, whatever the logits."""

import random

import pytest
import torch

from slmshift.slm.constrained import ConstraintError, LabelTrie, constrained_decode, prefix_allowed_tokens

END = 0
LABELS = {"card_arrival": [5, 6], "card_lost": [5, 7], "top_up": [8], "top_up_failed": [8, 9]}


def test_random_logits_only_ever_decode_valid_labels():
    trie = LabelTrie(LABELS, end_token_id=END)
    generator = random.Random(0)
    seen = set()
    for _ in range(300):
        table = {}

        def step(answer, table=table):
            key = tuple(answer)
            table.setdefault(key, [generator.gauss(0, 3) for _ in range(12)])
            return table[key]

        label, probability = constrained_decode(step, trie)
        assert label in LABELS
        assert 0 < probability <= 1
        seen.add(label)
    assert seen == set(LABELS)


def test_confidence_is_the_product_of_renormalised_step_probabilities():
    trie = LabelTrie({"a": [1], "b": [2]}, end_token_id=END)
    logits = {(): [0.0, 2.0, 0.0], (1,): [5.0, -1.0, -1.0]}
    label, probability = constrained_decode(lambda answer: logits[tuple(answer)], trie)
    expected = torch.softmax(torch.tensor([2.0, 0.0]), 0)[0].item() * 1.0
    assert label == "a" and probability == pytest.approx(expected)


def test_label_that_prefixes_another_needs_an_end_token():
    with pytest.raises(ConstraintError, match="prefix of"):
        LabelTrie({"top_up": [8], "top_up_failed": [8, 9]})


def test_empty_label_set_is_rejected():
    with pytest.raises(ConstraintError, match="label set is empty"):
        LabelTrie({})


def test_transformers_generate_under_the_trie_emits_only_labels():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=16, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                         eos_token_id=END, pad_token_id=END))
    trie = LabelTrie(LABELS, end_token_id=END)
    valid = {tuple(tokens + [END]) for tokens in LABELS.values()}
    for seed in range(6):
        prompt = torch.randint(1, 16, (1, 5), generator=torch.Generator().manual_seed(seed))
        output = model.generate(prompt, max_new_tokens=4, do_sample=False,
                                prefix_allowed_tokens_fn=prefix_allowed_tokens(trie, 5))
        answer = tuple(output[0, 5:].tolist())
        assert answer in valid or answer[: answer.index(END) + 1] in valid
