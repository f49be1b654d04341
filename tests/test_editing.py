"""Issue 18: editing trained like score matching (Hou et al., Alg. 1) and its baselines, on tiny U-Nets and toy-clip."""
import pytest
import torch

from diffnb import editing, rectifier, world, zoo


def tiny_unet(seed=0):
    from diffusers import UNet2DModel
    torch.manual_seed(seed)
    return UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 16),
                       layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4).eval().requires_grad_(False)


def tiny_scheduler():
    from diffusers import DDPMScheduler
    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)


@pytest.fixture(scope="module")
def clip():
    return zoo.load("toy-clip")


def test_direction_loss_is_eq4(clip):
    a = world.sample(2, seed=1, subject="person", smiling=False)
    b = world.with_attributes(a, smiling=True)
    src, tar = editing.edit_texts("smiling", a.attributes)
    with torch.no_grad():
        toward = editing.direction_loss(clip.model, clip.tokenizer, b.images, a.images, tar, src)
        away = editing.direction_loss(clip.model, clip.tokenizer, a.images, b.images, tar, src)
    assert toward.shape == (2,) and ((0 <= toward) & (toward <= 2)).all()
    assert torch.allclose(toward + away, torch.full((2,), 2.0), atol=1e-5)   # cos flips sign with the image change
    assert (toward < away).all()                                              # the true edit points the text's way


def test_edit_loss_is_eq6_and_l1_is_eq5(clip):
    a = world.sample(2, seed=2, subject="person", glasses=False)
    b = world.with_attributes(a, glasses=True)
    src, tar = editing.edit_texts("glasses", a.attributes)
    with torch.no_grad():
        l1 = editing.l1_loss(b.images, a.images)
        d = editing.direction_loss(clip.model, clip.tokenizer, b.images, a.images, tar, src)
        got = editing.edit_loss(clip.model, clip.tokenizer, b.images, a.images, tar, src, 2.0, 3.0)
    assert torch.allclose(l1, (b.images - a.images).abs().flatten(1).mean(1))
    assert torch.isclose(got, (2.0 * d + 3.0 * l1).mean(), atol=1e-6)


def test_edit_texts_change_only_the_edited_attribute():
    a = world.sample(3, seed=3, subject="person", hair="black")
    src, tar = editing.edit_texts("blonde", a.attributes)
    for s, t in zip(src, tar):
        ps, pt = world.parse_caption(s), world.parse_caption(t)
        assert ps["hair"] == "black" and pt["hair"] == "blonde"
        assert {k: v for k, v in ps.items() if k != "hair"} == {k: v for k, v in pt.items() if k != "hair"}


def test_alg1_loss_trains_the_rectifier_alone(clip):
    unet, sched = tiny_unet(), tiny_scheduler()
    rect = rectifier.new_rectifier(unet, width=8, sub_width=4)
    torch.nn.init.normal_(rect.subnets[0].to_out.weight, std=0.1)
    a = world.sample(2, seed=4, subject="person", smiling=False)
    src, tar = editing.edit_texts("smiling", a.attributes)
    loss = editing.alg1_loss(unet, sched, rect, clip.model, clip.tokenizer, a.images, src, tar,
                             torch.tensor([10, 800]),
                             torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    loss.backward()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in rect.parameters())
    assert all(p.grad is None for p in unet.parameters()) and all(p.grad is None for p in clip.model.parameters())


def test_an_untrained_delta_h_leaves_the_unet_unchanged():
    unet = tiny_unet()
    f = editing.DeltaH(unet.config.block_out_channels[-1], width=8)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (editing.HSpaceUNet(unet, f)(x, 500) - unet(x, 500).sample).abs().max() == 0
        torch.nn.init.normal_(f.conv_out.weight, std=0.5)
        assert (editing.HSpaceUNet(unet, f)(x, 500) - unet(x, 500).sample).abs().max() > 1e-4
    assert not unet.mid_block._forward_hooks            # the hook is removed after each call


def test_partial_inversion_reaches_t0_and_round_trips():
    unet, sched = tiny_unet(), tiny_scheduler()
    x0 = world.sample(2, seed=6).images
    x = editing.invert_to(unet, sched, x0, 300, 10)
    ts = editing._timesteps(300, 10)
    assert ts[0] == 300 and ts[-1] == -1
    y = x
    with torch.no_grad():
        for t, tp in zip(ts[:-1], ts[1:]):
            y = editing._move(sched, y, unet(y, t).sample, t, tp)
    assert (y - x0).abs().mean() < 0.2     # DDIM's round trip is approximate; a random U-Net is a harsh test


@pytest.mark.parametrize("method", editing.METHODS)
def test_each_method_trains_and_edits(clip, method):
    unet, sched = tiny_unet(), tiny_scheduler()
    rect = rectifier.new_rectifier(unet, width=8, sub_width=4)
    cfg = editing.EditTrainConfig(method=method, steps=1, batch_size=2, n_images=4, s_inv=2, s_gen=2, hspace_steps=2)
    run = editing.train(unet, sched, rect, clip, cfg)
    assert len(run.losses) == 1 and run.losses[0][1] == run.losses[0][1]
    x0 = editing.edit_images("smiling", 2, seed=7, domain="photo").images
    out = editing.edit(unet, sched, rect, run, x0, num_inference_steps=4, generator=torch.Generator().manual_seed(3))
    assert out.shape == x0.shape and torch.isfinite(out).all()
    x_T = editing.invert(unet, sched, rect, x0, 4)                  # shared by several edits of the same images
    again = editing.edit(unet, sched, rect, run, x0, num_inference_steps=4, generator=torch.Generator().manual_seed(3),
                         x_T=x_T)
    assert torch.equal(again, out)
    with pytest.raises(ValueError, match="x_T must have the images' shape"):
        editing.edit(unet, sched, rect, run, x0, num_inference_steps=4, x_T=x_T[:1])
    walk = editing.trajectory(unet, sched, rect, run, x0, num_inference_steps=4,
                              generator=torch.Generator().manual_seed(3))
    assert len(walk.timesteps) == 4 and walk.timesteps[0] > walk.timesteps[-1]
    assert torch.equal(walk.edited[-1], out)                 # the walk is edit()'s own
    d = walk.distance()
    assert d.shape == (5, 2) and float(d[0].abs().max()) == 0   # both walks start from the same inverted x_T


# ------------------------------------------------------------------------------------------------
# Bad input: each names what is accepted
# ------------------------------------------------------------------------------------------------
def test_bad_inputs_name_what_is_accepted(clip):
    with pytest.raises(ValueError, match="unknown word.*toy-clip's tokenizer knows"):
        editing.check_texts(clip.tokenizer, ["a grinning person"])
    with pytest.raises(ValueError, match="unknown edit.*accepted: smiling, glasses, blonde"):
        editing.EditTrainConfig(edit="beard")
    for lc, lr in ((-1, 1), (1, float("nan")), (float("inf"), 1)):
        with pytest.raises(ValueError, match="lambda_(clip|recon) must be"):
            editing.EditTrainConfig(lambda_clip=lc, lambda_recon=lr)
    with pytest.raises(ValueError, match="both 0"):
        editing.check_lambdas(0, 0)
    with pytest.raises(ValueError, match="reversed"):
        editing.check_interval(200, 600)
    with pytest.raises(ValueError, match=r"t_start must be an integer in \[0, 1000\]"):
        editing.check_interval(1200, 0)
    with pytest.raises(ValueError, match="reversed"):
        editing.EditTrainConfig(t_edit=100, t_boost=300)
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        editing.check_batch(torch.zeros(2, 3, 16, 16), 32)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        editing.check_batch(torch.full((2, 3, 32, 32), 3.0), 32)
    with pytest.raises(ValueError, match="unknown method"):
        editing.EditTrainConfig(method="nada")


def test_an_edit_rectifier_for_another_unet_is_refused(clip):
    unet, other = tiny_unet(), tiny_unet()
    rect = rectifier.new_rectifier(unet, width=8, sub_width=4)
    from diffusers import UNet2DModel
    wider = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(8, 24), layers_per_block=1,
                        down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                        norm_num_groups=4)
    with pytest.raises(ValueError, match="fingerprint"):
        editing.train(wider, tiny_scheduler(), rect, clip, editing.EditTrainConfig(steps=1, n_images=2, batch_size=2))
    del other


def test_an_edit_round_trips_and_loads_only_onto_its_base(clip, tmp_path):
    unet, sched = tiny_unet(), tiny_scheduler()
    rect = rectifier.new_rectifier(unet, width=8, sub_width=4)
    run = editing.train(unet, sched, rect, clip, editing.EditTrainConfig(steps=2, batch_size=2, n_images=4, lr=1e-2))
    changed = [n for n, p in run.model.named_parameters() if not torch.equal(p, dict(rect.named_parameters())[n])]
    assert changed and all(".to_out." in n for n in changed)          # trainable="to_out": the C_out factors alone
    editing.save_edit(run, tmp_path / "e.safetensors", rect, dtype=torch.float32)
    back = editing.load_edit(tmp_path / "e.safetensors", rect, unet)
    assert back.config == run.config and back.losses == [list(x) for x in run.losses]
    assert all(torch.equal(a, b) for a, b in zip(back.model.state_dict().values(), run.model.state_dict().values()))
    other = rectifier.new_rectifier(unet, width=8, sub_width=4)       # same shapes, other weights
    torch.nn.init.normal_(other.subnets[0].to_in.weight)
    with pytest.raises(ValueError, match="another base rectifier"):
        editing.load_edit(tmp_path / "e.safetensors", other)


def test_full_run_trains_evaluates_and_writes_a_card(tmp_path):
    """The maintainers' runner end to end, at toy sizes: one Alg. 1 and one h-space run, the lambda grid, Table 2
    with the unedited source row, the paintings, the steps sweep, and the card."""
    from diffnb import editing_run
    cfg = editing_run.FullRunConfig(steps=1, batch_size=2, n_eval=2, eval_steps=2, sweep_steps=(2,), sweep_n=2,
                                    n_painting=2, grid_clip=(1.0,), grid_recon=(0.5, 1.0), grid_n=2, n_examples=2,
                                    edits=("glasses",), sweep_edit="glasses")
    for run in ("alg1", "hspace"):
        info = editing_run.train_one(tmp_path, "glasses", run, cfg, progress=False)
        assert info["seconds"] > 0 and (tmp_path / editing_run.file_name("glasses", run)).is_file()
    grid = editing_run.load_grid(editing_run.lambda_grid(tmp_path, cfg, progress=False))
    assert set(grid) == {"source", (1.0, 0.5), (1.0, 1.0)} and grid[(1.0, 0.5)].shape == (2, 3, 32, 32)
    res = editing_run.evaluate(tmp_path, cfg, progress=False)["glasses"]
    rows = res["table2"]
    assert list(rows) == ["unedited source", "reconstruction", "alg1", "hspace"]
    assert rows["unedited source"]["identity"][0] == pytest.approx(1.0, abs=1e-6)
    assert rows["unedited source"]["others_kept"][0] == 1.0
    assert list(res["painting"]) == ["unedited source", "reconstruction", "alg1"]
    assert set(res["sweep"]) == {"reconstruction", "alg1", "hspace"} and set(res["sweep"]["alg1"]) == {"2"}
    assert set(res["lambda_grid"]) == {"1.0,0.5", "1.0,1.0"}
    assert len(rows["alg1"]["per_image"]["identity"]) == 2
    ex = editing_run.load_examples(tmp_path / "examples_glasses.safetensors")
    assert {"photo/source", "photo/reconstruction", "photo/alg1", "photo/hspace", "painting/alg1", "sweep/alg1/2",
            "sweep/reconstruction/2"} <= set(ex)
    again = editing_run.add_reconstruction(tmp_path, "glasses")        # for results measured before the row existed
    assert list(again["table2"]) == list(rows) and again["table2"]["reconstruction"] == rows["reconstruction"]
    import json
    import shutil
    root = tmp_path / "models"
    root.mkdir()
    shutil.copy2(zoo.default_root() / "manifest.json", root / "manifest.json")    # the models it was built on
    (dest,) = editing_run.install(tmp_path, root=root, edits=["glasses"])
    assert dest.name == "editing-glasses" and (dest / "card.md").is_file()
    assert set(json.loads((root / "manifest.json").read_text())["editing-glasses"]["built_on"]) == \
        {"toy-ddpm", "toy-rectifier", "toy-clip"}
    redo = editing_run.update_runs(tmp_path, "glasses", ["hspace"], progress=False)    # after a retrain
    assert list(redo["table2"]) == list(rows) and redo["table2"]["hspace"] == rows["hspace"]
    assert redo["sweep"]["hspace"] == res["sweep"]["hspace"]
    assert ex["photo/alg1"].shape == (2, 3, 32, 32) and float(ex["photo/alg1"].abs().max()) <= 1
    text = editing_run.card(tmp_path, "glasses")
    assert "| photo | unedited source |" in text and "| photo | alg1 |" in text and "| painting | alg1 |" in text
    with pytest.raises(ValueError, match="unknown run 'dreambooth'; accepted: alg1, markovian"):
        editing_run.train_one(tmp_path, "glasses", "dreambooth", cfg)
