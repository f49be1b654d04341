"""Quality bars of the committed toy models: they load the shipped weights and measure."""
import pytest

from diffnb import evaluate, world, zoo


@pytest.fixture(scope="module")
def attr():
    return zoo.load("toy-attr").model


@pytest.mark.parametrize("domain,bar", [("toy", 0.98), ("photo", 0.90)])
def test_toy_attr_accuracy(attr, domain, bar):
    acc = evaluate.attr_accuracy(attr, domain=domain, n=2000)
    for b in world.BINARY:
        assert acc.accuracy[b] >= bar, (domain, b, acc.accuracy)


@pytest.fixture(scope="module")
def ddpm_quality(attr):
    samples = evaluate.ddpm_samples(zoo.load("toy-ddpm"), n=256, num_inference_steps=50, seed=0)
    return evaluate.sample_quality(samples, attr)


def test_toy_ddpm_samples_are_confidently_readable(ddpm_quality):
    assert ddpm_quality.confident_all_binary >= 0.90, ddpm_quality.confident_binary


def test_toy_ddpm_colours_are_on_palette(ddpm_quality):
    for name, frac in ddpm_quality.confident_colours.items():
        assert frac >= 0.90, (name, ddpm_quality.confident_colours)


def test_toy_ddpm_attribute_frequencies_match_world(ddpm_quality):
    assert ddpm_quality.max_frequency_gap <= 0.10, ddpm_quality.frequency
