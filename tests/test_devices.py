"""Bundles move whole: every module a bundle holds goes to the device asked for, and a device that does not exist is
refused by name with the devices that do."""
import pytest
import torch

from diffnb import devices, t2i, zoo


@pytest.mark.parametrize("name", list(zoo.TOY_MODELS))
@pytest.mark.parametrize("how", ["load", "to"])
def test_every_toy_model_moves_whole_to_meta(name, how):
    """Both ways: zoo.load(..., device=) and the bundle's own .to(device)."""
    bundle = zoo.load(name, device="meta") if how == "load" else zoo.load(name).to("meta")
    parts = devices.modules(bundle)
    assert parts, f"{name}: the bundle holds no modules"
    assert bundle.device.type == "meta"
    for part, module in parts.items():
        tensors = list(module.parameters()) + list(module.buffers())
        assert tensors and all(t.device.type == "meta" for t in tensors), \
            f"{name}.{part}: {sorted({str(t.device) for t in tensors})}, not all on meta"


def test_bundle_to_moves_the_text_encoder_too():
    bundle = zoo.load("toy-t2i").to("meta")
    assert bundle.device.type == "meta"
    assert next(bundle.text_encoder.parameters()).device.type == "meta"


def test_a_missing_device_is_named_with_the_available_ones():
    with pytest.raises(ValueError, match=r"device 'cuda:64' does not exist here; available: cpu"):
        zoo.load("toy-attr", device="cuda:64")
    with pytest.raises(ValueError, match=r"'graphics' is not a device name; available here: cpu"):
        zoo.load("toy-attr").to("graphics")


@pytest.mark.skipif(devices.get_device().type == "cpu", reason="no CUDA or MPS device here")
def test_toy_t2i_samples_on_an_accelerator():
    """Notebooks 02, 05 and 06 pass device=DEVICE: the bundle and the inputs it is given live on that device."""
    dev = devices.get_device()
    bundle = zoo.load("toy-t2i", device=dev)
    assert {p.device.type for m in devices.modules(bundle).values() for p in m.parameters()} == {dev.type}
    out = t2i.sample(bundle, ["a smiling cat with glasses"], guidance_scale=5.0, num_inference_steps=3,
                     generator=torch.Generator().manual_seed(0))
    assert out.images.shape == (1, 3, 32, 32) and torch.isfinite(out.images).all()
    x = t2i.denoise(bundle, out.x_T.to(dev), t2i.encode_prompt(bundle, ["a cat"]), t2i.null_embedding(bundle, 1),
                    5.0, 3)
    assert x.device.type == dev.type



def test_training_restores_the_thread_count(monkeypatch):
    """editing.train and rectifier.train run on cfg.num_threads and give the previous count back, so a notebook's
    later cells keep the threads their environment gave them (threads.torch_threads)."""
    from diffnb import editing, rectifier, threads
    seen = []
    monkeypatch.setattr(rectifier, "_train", lambda *a, **k: seen.append(torch.get_num_threads()))
    monkeypatch.setattr(editing, "_train", lambda *a, **k: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    target = 2 if before == 1 else 1
    rectifier.train(None, None, rectifier.RectifierTrainConfig(num_threads=target))
    editing.train(None, None, None, None, editing.EditTrainConfig(edit="smiling", num_threads=target))
    editing.train(None, None, None, None, editing.EditTrainConfig(edit="smiling", num_threads=0))
    assert seen == [target, target, before] and torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        with threads.torch_threads(0):
            pass
    assert torch.get_num_threads() == before
