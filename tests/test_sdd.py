"""diffnb.sdd (issue 19): Eqs. 8-12 on known inputs, S and its errors, bad inputs, Alg. 1's terms, the fingerprint
check, the time model; and the bars on the shipped manipulators (data/models/sdd-manipulators)."""
import math

import pytest
import torch

from diffnb import sdd, sdd_eval, world, zoo
from diffnb.maint import sdd_run, sdd_sweep


@pytest.fixture(scope="module")
def t2i_bundle():
    return zoo.load("toy-t2i")


@pytest.fixture(scope="module")
def ae():
    return zoo.load("toy-ae")


# ---------------------------------------------------------------- Eqs. 9-11 on known inputs
def test_entropy_of_a_flat_map_is_log_n_in_both_forms():
    d = torch.ones(2, 3, 4, 4)
    assert torch.allclose(sdd.entropy(d, "paper"), torch.full((2,), math.log(48)), atol=1e-5)
    assert torch.allclose(sdd.entropy(d, "official"), torch.full((2,), math.log(16)), atol=1e-5)


def test_entropy_falls_when_the_gradient_concentrates():
    flat = torch.ones(1, 3, 8, 8)
    peaked = flat.clone()
    peaked[0, :, 2, 3] = 40.0
    for form in sdd.ENTROPY_FORMS:
        assert sdd.entropy(peaked, form) < sdd.entropy(flat, form) - 1.0
        assert sdd.entropy(-peaked, form) == pytest.approx(float(sdd.entropy(peaked, form)))   # |d|


def test_l1_norm_and_minmax():
    d = torch.tensor([[[[1.0, -2.0], [3.0, -4.0]]]])
    assert sdd.l1_norm(d).item() == 10.0
    v = torch.tensor([[2.0, 4.0, 6.0], [1.0, 1.0, 1.0]])
    assert torch.allclose(sdd.minmax(v), torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.0, 0.0]]))


# ---------------------------------------------------------------- Eq. 8 in both forms
def test_full_direction_is_the_gradient_of_eq_8(t2i_bundle):
    """<d_t, v> equals the central difference of ||eps - eps_theta(sqrt(a) y + sqrt(1 - a) eps, t, gamma)||^2."""
    y = world.sample(2, seed=5, subject="person").images * 0.9
    t, prompt = 300, "a person with glasses"
    d = sdd.direction(t2i_bundle, y, prompt, t, "full", generator=torch.Generator().manual_seed(1))
    eps = torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    a = sdd.alpha_bar(t2i_bundle, t)
    from diffnb import t2i
    cond = t2i.encode_prompt(t2i_bundle, [prompt] * 2)

    def loss(z):
        with torch.no_grad():
            return float(((eps - sdd._eps_hat(t2i_bundle, a.sqrt() * z + (1 - a).sqrt() * eps, t, cond, cond, 1.0))
                          ** 2).sum())
    v = torch.randn(y.shape, generator=torch.Generator().manual_seed(2))
    h = 1e-2
    fd = (loss(y + h * v) - loss(y - h * v)) / (2 * h)
    assert float((d * v).sum()) == pytest.approx(fd, rel=0.05)


def test_sds_direction_skips_the_jacobian(t2i_bundle):
    y = world.sample(2, seed=6, subject="person").images
    d = sdd.directions(t2i_bundle, y, "a smiling person", 500, generator=torch.Generator().manual_seed(3))
    eps = torch.randn(y.shape, generator=torch.Generator().manual_seed(3))
    a = sdd.alpha_bar(t2i_bundle, 500)
    from diffnb import t2i
    cond = t2i.encode_prompt(t2i_bundle, ["a smiling person"] * 2)
    with torch.no_grad():
        e = sdd._eps_hat(t2i_bundle, a.sqrt() * y + (1 - a).sqrt() * eps, 500, cond, cond, 1.0)
    assert torch.allclose(d["sds"], (1 - a) * (e - eps), atol=1e-5)
    assert not torch.allclose(d["sds"], d["full"], atol=1e-3)


# ---------------------------------------------------------------- S = {t | HQS_t > xi}
@pytest.fixture(scope="module")
def small_curve(t2i_bundle):
    y = world.sample(4, seed=7, subject="person").images
    return sdd.hqs_curves(t2i_bundle, y, "a person with glasses", (100, 300, 500, 700, 900), 7.5,
                          torch.Generator().manual_seed(0), forms=("sds",))["sds"]


def test_hqs_is_the_mean_of_normalised_norm_minus_entropy(small_curve):
    h = small_curve.hqs()
    assert h.shape == (5,) and (h >= -1).all() and (h <= 1).all()
    assert torch.allclose(h, (sdd.minmax(small_curve.N) - sdd.minmax(small_curve.H["paper"])).mean(0))


def test_xi_zero_selects_every_t_with_positive_score(small_curve):
    h = small_curve.hqs().tolist()
    assert sdd.select(small_curve, 0.0) == tuple(t for t, v in zip(small_curve.t, h) if v > 0)
    assert sdd.largest(small_curve)[0] in sdd.select(small_curve, 0.0)


def test_xi_above_the_maximum_is_an_empty_set_error(small_curve):
    with pytest.raises(ValueError, match="S would be empty"):
        sdd.select(small_curve, min(1.0, float(small_curve.hqs().max()) + 1e-3))


@pytest.mark.parametrize("xi", [-1.5, 1.01, "0.5", True, float("nan")])
def test_xi_outside_minus_one_one_is_refused(small_curve, xi):
    with pytest.raises(ValueError, match=r"xi must be a number in \[-1, 1\]"):
        sdd.select(small_curve, xi)


def test_official_selection_is_entropy_only_on_the_sds_form(small_curve):
    cols = [j for j, t in enumerate(small_curve.t) if t in sdd.OFFICIAL_GRID]
    best = small_curve.t[cols[int(small_curve.H["official"][:, cols].mean(0).argmin())]]
    assert sdd.official_selection(small_curve) == (best,)


# ---------------------------------------------------------------- bad input
def test_unknown_prompt_words_name_the_vocabulary(t2i_bundle):
    y = world.sample(1, seed=0).images
    with pytest.raises(ValueError, match=r"unknown word\(s\) \['angry'\].*knows only these words"):
        sdd.direction(t2i_bundle, y, "a angry person", 500)


@pytest.mark.parametrize("ts", [[0], [1001], [500, 500], [], [2.5]])
def test_t_grid_outside_one_to_T_is_refused(t2i_bundle, ts):
    with pytest.raises(ValueError, match=r"timesteps must be distinct integers in \[1, 1000\]"):
        sdd.hqs_curves(t2i_bundle, world.sample(1, seed=0).images, "a person", ts)


@pytest.mark.parametrize("y, match", [(torch.zeros(1, 3, 16, 16), r"\(B, 3, 32, 32\)"),
                                      (torch.zeros(3, 32, 32), r"\(B, 3, 32, 32\)"),
                                      (torch.full((1, 3, 32, 32), 2.0), r"\[-1, 1\]"),
                                      ("image.png", r"\(B, 3, 32, 32\)")])
def test_images_of_wrong_shape_or_range_are_refused(t2i_bundle, ae, y, match):
    with pytest.raises(ValueError, match=match):
        sdd.direction(t2i_bundle, y, "a person", 500)
    with pytest.raises(ValueError, match=match):
        sdd.manipulate(ae, sdd.LatentMapper(ae.latent_shape), y)


def test_unknown_edit_is_refused():
    with pytest.raises(ValueError, match="unknown edit 'angry'; accepted: smiling, glasses, blonde hair"):
        sdd_eval.held_out("angry")


# ---------------------------------------------------------------- Alg. 1
def test_a_fresh_mapper_reproduces_the_autoencoder(ae):
    y = world.sample(3, seed=8).images
    from diffnb import toyae
    with torch.no_grad():
        assert torch.allclose(sdd.manipulate(ae, sdd.LatentMapper(ae.latent_shape), y),
                              toyae.decode(ae, toyae.encode(ae, y)), atol=0.02)


def test_the_identity_term_acts(ae, t2i_bundle):
    """Unlike the official code's (unedited vs itself), our identity term changes what is learned."""
    from diffnb import metrics
    ident = metrics.toy_lpips(zoo.load("toy-attr").model).module
    cfg = sdd.DistillConfig(iterations=3, batch_size=2, guidance_scale=30.0)
    a = sdd.distill(ae, t2i_bundle, "a person with glasses", (400,), cfg, identity=ident)
    cfg0 = sdd.DistillConfig(**{**cfg.__dict__, "id_weight": 0.0})
    b = sdd.distill(ae, t2i_bundle, "a person with glasses", (400,), cfg0, identity=ident)
    assert a.losses[-1][3] > 0
    diff = max((p - q).abs().max().item() for p, q in zip(a.mapper.parameters(), b.mapper.parameters()))
    assert diff > 1e-6, "the identity term did not change the mapper"
    assert all(math.isfinite(v) for row in a.losses for v in row)


def test_a_snapshot_after_k_steps_is_a_k_step_run(ae, t2i_bundle):
    """What the settings sweep (diffnb.maint.sdd_sweep) relies on: the callback's mapper after k of n steps equals
    the mapper of a k-step run, bit for bit (constant learning rate, the same image and noise streams)."""
    cfg = sdd.DistillConfig(iterations=3, batch_size=2)
    seen = {}
    sdd.distill(ae, t2i_bundle, "a person with glasses", (400,), cfg,
                callback=lambda k, m: seen.setdefault(k, {n: p.detach().clone() for n, p in m.state_dict().items()}))
    short = sdd.distill(ae, t2i_bundle, "a person with glasses", (400,), sdd.DistillConfig(iterations=2, batch_size=2))
    assert sorted(seen) == [1, 2, 3]
    assert all(torch.equal(seen[2][n], p) for n, p in short.mapper.state_dict().items())
    assert not all(torch.equal(seen[3][n], p) for n, p in short.mapper.state_dict().items())


def test_the_sweep_rule_picks_the_most_successful_setting_that_keeps_enough():
    row = lambda w, it, s, k: {"lr": 5e-3, "id_weight": w, "batch_size": 8, "guidance_scale": 30.0, "iterations": it,
                               "success": s, "kept": k}
    rows = [row(0.05, 40, 0.9, 0.80), row(0.05, 40, 0.7, 0.95),      # most success, but one run keeps too little
            row(0.1, 40, 0.5, 0.90), row(0.1, 40, 0.4, 0.88),
            row(0.1, 100, 0.6, 0.90), row(0.1, 100, 0.5, 0.89)]
    best, rule, table = sdd_sweep.choose(rows, kept_min=0.87)
    assert (best["id_weight"], best["iterations"]) == (0.1, 100) and best["mean_success"] == pytest.approx(0.55)
    assert "0.87" in rule and len(table) == 3
    best, rule, _ = sdd_sweep.choose(rows, kept_min=0.99)          # none keeps enough: the one that keeps most
    assert "no setting" in rule and best["min_kept"] == pytest.approx(0.89)


def test_the_shipped_recipe_is_the_sweeps_choice():
    """DistillConfig's defaults, the shipped manipulators' config and sweep.json's choice are one recipe."""
    import json
    w = json.loads((SHIPPED / "sweep.json").read_text())
    best, _, _ = sdd_sweep.choose(w["rows"], w["kept_min"])
    assert best == w["chosen"]
    d = sdd.DistillConfig()
    assert (d.lr, d.id_weight, d.batch_size, d.guidance_scale, d.iterations) == \
        (best["lr"], best["id_weight"], best["batch_size"], best["guidance_scale"], best["iterations"])
    summary = json.loads((SHIPPED / "summary.json").read_text())
    assert summary["config"]["distill"] == {**sdd.DistillConfig().__dict__}


def test_a_manipulator_trained_against_another_model_is_refused(ae, t2i_bundle, tmp_path):
    cfg = sdd.DistillConfig(iterations=1, batch_size=2)
    m = sdd.distill(ae, t2i_bundle, "a smiling person", (500,), cfg)
    sdd.save(m, tmp_path / "m.safetensors")
    assert sdd.load(tmp_path / "m.safetensors", ae, t2i_bundle).timesteps == (500,)
    other_ae, other_t2i = zoo.load("toy-ae"), zoo.load("toy-t2i")
    with torch.no_grad():
        next(other_ae.vae.parameters()).add_(1e-2)
        next(other_t2i.unet.parameters()).add_(1e-2)
    with pytest.raises(sdd.StaleManipulatorError, match="another toy-ae"):
        sdd.load(tmp_path / "m.safetensors", other_ae, t2i_bundle)
    with pytest.raises(sdd.StaleManipulatorError, match="another toy-t2i.*full-run"):
        sdd.load(tmp_path / "m.safetensors", ae, other_t2i)


# ---------------------------------------------------------------- the time model (Eqs. 13-15)
def test_time_model_breaks_even_where_eq_15_says():
    tau_train, tau_diff, tau_sdd = 120.0, 2.0, 0.01
    m = sdd_eval.break_even_m(tau_train, tau_diff, tau_sdd)
    assert sdd_eval.total_time_sdd(tau_train, tau_sdd, m, 10) == pytest.approx(
        sdd_eval.total_time_diffusion(tau_diff, m, 10))
    assert sdd_eval.total_time_sdd(tau_train, tau_sdd, 2 * m, 10) < sdd_eval.total_time_diffusion(tau_diff, 2 * m, 10)
    assert sdd_eval.break_even_m(1.0, 0.5, 0.5) == float("inf")


def test_toy_fid_is_zero_for_identical_sets_and_grows_with_change():
    attr = zoo.load("toy-attr").model
    y = world.sample(80, seed=9).images
    assert sdd_eval.toy_fid(attr, y, y) == pytest.approx(0.0, abs=1e-3)
    assert sdd_eval.toy_fid(attr, y, y.flip(1)) > 1.0


# ---------------------------------------------------------------- bars on the shipped manipulators
SHIPPED = zoo.default_root() / sdd_eval.NAME


@pytest.fixture(scope="module")
def table3(ae, t2i_bundle):
    """Table 3 in miniature on 128 held-out images per edit, from the shipped manipulators."""
    attr, clip = zoo.load("toy-attr").model, zoo.load("toy-clip")
    zoo.verify(sdd_eval.NAME)
    out = {}
    for edit in sdd_eval.EDITS:
        y = sdd_eval.held_out(edit, 128)
        for strategy in sdd_eval.STRATEGIES:
            m = sdd.load(SHIPPED / sdd_eval.file_name(edit, strategy), ae, t2i_bundle)
            with torch.no_grad():
                out[edit, strategy] = sdd_eval.score(strategy, edit, y, sdd.manipulate(ae, m.mapper, y), attr, clip)
    return out


@pytest.mark.slow
def test_shipped_manipulators_match_the_shipped_models(ae, t2i_bundle):
    """Fails loudly once toy-ae or toy-t2i is retrained: re-run `python -m diffnb.sdd full-run runs/sdd`."""
    for f in sorted(SHIPPED.glob("*.safetensors")):
        sdd.load(f, ae, t2i_bundle)
    assert len(list(SHIPPED.glob("*.safetensors"))) == len(sdd_eval.EDITS) * len(sdd_eval.STRATEGIES)
    assert all(f.stat().st_size <= 2**20 for f in SHIPPED.glob("*.safetensors"))


# Measured misses of the kept bar (strict: the test turns red once a recomputed run meets it, and the entry goes).
KEPT_MISSES: dict = {}   # none since the recipe of sdd-manipulators' sweep.json (blonde hair kept 0.805 before it)


@pytest.mark.slow
@pytest.mark.parametrize("edit", [pytest.param(e, marks=pytest.mark.xfail(strict=True, reason=KEPT_MISSES[e]))
                                  if e in KEPT_MISSES else e for e in sdd_eval.EDITS])
def test_manipulator_edits_keep_the_other_binary_attributes(table3, edit):
    s = table3[edit, "largest HQS"]
    assert s.kept >= 0.85, f"{edit} (largest HQS) keeps the non-target binary attributes in {s.kept:.3f} (bar 0.85)"


def _hqs_beats_random(table3) -> dict:
    return {e: (table3[e, "largest HQS"].success, table3[e, "random"].success) for e in sdd_eval.EDITS}


@pytest.mark.slow
def test_hqs_selected_t_beats_random_t_in_edit_success(table3):
    wins = _hqs_beats_random(table3)
    n = sum(h > r for h, r in wins.values())
    assert n >= 2, f"largest-HQS beats random t in edit success for {n} of 3 edits (bar 2): {wins}"


def test_benchmark_entries_compute_eqs_13_to_15():
    times = sdd_run.bench_times(n=2, num_inference_steps=4, repeats=1, iterations=1)
    assert set(times) >= {"tau_sdd_train_s", "tau_sdd_infer_s_per_image", "tau_sdedit_s_per_image",
                          "tau_ddib_s_per_image", "sdd_break_even_m_vs_sdedit", "sdedit_over_sdd_total_time_m100_n10"}
    assert all(v > 0 for v in times.values())
    assert times["sdd_break_even_m_vs_sdedit"] == pytest.approx(sdd_eval.break_even_m(
        times["tau_sdd_train_s"], times["tau_sdedit_s_per_image"], times["tau_sdd_infer_s_per_image"]))
