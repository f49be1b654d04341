"""toy-ae (issue 19): the shipped autoencoder keeps every attribute toy-attr reads, and loads as a diffusers
AutoencoderKL with the latent shape SDD's mapper expects; its trainer runs through diffnb.fit (logs, checkpoints,
resumes, keeps its time budget)."""
import json
from dataclasses import replace

import pytest
import torch

from diffnb import evaluate, toyae, world, zoo


@pytest.fixture(scope="module")
def ae():
    return zoo.load("toy-ae")


def test_toy_ae_is_a_small_autoencoderkl(ae, repo_root):
    from diffusers import AutoencoderKL
    assert isinstance(ae.vae, AutoencoderKL)
    assert ae.latent_shape == (8, 8, 8)
    size = sum(p.stat().st_size for p in (repo_root / "data/models/toy-ae").iterdir())
    assert size <= 3 * 2**20, f"toy-ae is {size / 2**20:.2f} MB, over the 3 MB budget"
    y = world.sample(4, seed=3).images
    w = toyae.encode(ae, y)
    x = toyae.decode(ae, w)
    assert w.shape == (4, 8, 8, 8) and x.shape == y.shape and x.min() >= -1 and x.max() <= 1


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["toy", "photo"])
def test_toy_ae_keeps_every_attribute(ae, domain):
    attr = zoo.load("toy-attr").model
    with torch.no_grad():
        q = evaluate.reconstruction_quality(ae, attr, domain, n=256, seed=61_000)
    worst = min(q["agreement"], key=q["agreement"].get)
    assert q["agreement"][worst] >= 0.95, (f"toy-attr agrees between input and reconstruction on {worst} for only "
                                           f"{q['agreement'][worst]:.3f} of {domain} images (bar 0.95)")


def test_trainer_logs_checkpoints_and_resumes_through_fit(tmp_path):
    from safetensors.torch import load_file

    from diffnb import fit
    from diffnb.maint.ae_training import train_ae
    cfg = replace(toyae.AETrainConfig(), steps=2, batch_size=4, save_every=1, log_every=1, max_minutes=0.0)
    first = train_ae(cfg, tmp_path, progress=False)
    assert first.steps == 2 and [s for s, _ in first.losses] == [1, 2]
    assert {"config.json", "diffusion_pytorch_model.safetensors", "train_log.json"} <= \
        {p.name for p in tmp_path.iterdir()}
    saved = load_file(str(tmp_path / "diffusion_pytorch_model.safetensors"))
    assert all(v.dtype == torch.float32 for v in saved.values())          # fp32: the run resumes from its weights
    probe = toyae.build(cfg)
    assert fit.resume(tmp_path, probe) == 2
    assert all(torch.equal(v, saved[k]) for k, v in probe.state_dict().items())
    resumed = train_ae(replace(cfg, steps=4), tmp_path, progress=False, resume=True)
    assert resumed.steps == 4 and resumed.losses[:2] == first.losses and [s for s, _ in resumed.losses] == [1, 2, 3, 4]
    assert json.loads((tmp_path / "train_log.json").read_text())["step"] == 4
    after = load_file(str(tmp_path / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(after[k], saved[k]) for k in saved)
    assert toyae.load_folder(tmp_path).latent_shape == (8, 8, 8)


def test_trainer_stops_and_saves_at_its_time_budget(tmp_path):
    from diffnb.maint.ae_training import train_ae
    cfg = replace(toyae.AETrainConfig(), steps=50, batch_size=4, save_every=100, log_every=1, max_minutes=1e-9)
    result = train_ae(cfg, tmp_path, progress=False)
    assert result.steps == 1 and json.loads((tmp_path / "train_log.json").read_text())["step"] == 1
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
