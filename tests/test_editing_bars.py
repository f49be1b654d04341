"""Notebook 04's bars (issue 18 item 3) on the shipped edits (data/models/editing-<edit>).

Table 2 was measured on 100 held-out photo images per edit when the edits were installed
(`python -m diffnb.editing_run evaluate`, about 40 minutes of CPU). Measuring it again here would cost most of CI's
budget, so each test first re-measures the recorded images it can afford from the shipped weights (the first
`N_CHECK`, which `evaluate` kept one by one) and requires them to reproduce; then it applies the bar to the recorded
100-image numbers, which those weights produced."""
import pytest
import torch

from diffnb import editing, editing_eval, metrics, zoo

N_CHECK = 8
SUCCESS_BAR, KEPT_BAR = 0.80, 0.85


@pytest.fixture(scope="module")
def models():
    ddpm, rect = zoo.load("toy-ddpm"), zoo.load("toy-rectifier").model
    attr, seg = zoo.load("toy-attr").model, zoo.load("toy-seg").model
    return ddpm, rect, attr, seg, metrics.toy_lpips(attr)


@pytest.fixture(scope="module")
def results():
    return {e: editing_eval.load_results(e) for e in editing.EDITS}


@pytest.mark.slow
@pytest.mark.parametrize("run", ["alg1", "markovian"])
@pytest.mark.parametrize("edit", list(editing.EDITS))
def test_recorded_scores_reproduce_from_the_shipped_weights(models, results, edit, run):
    ddpm, rect, attr, seg, perceptual = models
    cfg = results[edit]["config"]
    x0 = editing.edit_images(edit, cfg["n_eval"], seed=editing.HELD_OUT_SEED, domain="photo").images[:N_CHECK]
    out = editing.edit(ddpm.unet, ddpm.scheduler, rect, editing_eval.load_run(edit, run, rect, ddpm.unet), x0,
                       cfg["eval_steps"])
    s = editing_eval.score(edit, x0, out, attr, seg, perceptual)
    stored = results[edit]["table2"][run]["per_image"]
    assert s.success.float().tolist() == stored["success"][:N_CHECK], (edit, run, s.success, stored["success"])
    gap = float((s.identity - torch.tensor(stored["identity"][:N_CHECK])).abs().max())
    assert gap < 0.01, f"{edit}/{run}: identity differs from the recorded scores by {gap:.4f}"


@pytest.mark.slow
@pytest.mark.parametrize("edit", ["smiling", "glasses"])
def test_alg1_edits_succeed_and_keep_the_other_attributes(results, edit):
    r = results[edit]["table2"]["alg1"]
    n = results[edit]["config"]["n_eval"]
    assert n >= 100
    assert r["success"][0] >= SUCCESS_BAR, f"{edit}: Alg. 1 succeeds on {r['success'][0]:.3f} of {n}, bar {SUCCESS_BAR}"
    assert r["others_kept"][0] >= KEPT_BAR, f"{edit}: others kept {r['others_kept'][0]:.3f}, bar {KEPT_BAR}"
    assert results[edit]["table2"]["unedited source"]["success"][0] == 0, "the sources must not already show the edit"


# The toy world disagrees with the paper's Table 2 (notebook 04 §4 says so): Alg. 1 edits more often than the Markovian
# baseline on every edit but keeps less identity, measured on 100 held-out photo images each (2026-11-29 full run).
IDENTITY_MISSES = {
    "smiling": "Alg. 1 success 0.87, identity 0.367; Markovian success 0.71, identity 0.702",
    "glasses": "Alg. 1 success 0.99, identity 0.315; Markovian success 0.52, identity 0.689",
    "blonde": "Alg. 1 success 0.84, identity -0.390; Markovian success 0.01 (barely edits), identity 0.568",
}


@pytest.mark.slow
@pytest.mark.parametrize("edit", list(editing.EDITS))
def test_alg1_keeps_identity_at_least_as_well_as_markovian_at_equal_or_higher_success(results, edit, request):
    if edit in IDENTITY_MISSES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=IDENTITY_MISSES[edit]))
    t = results[edit]["table2"]
    a, m = t["alg1"], t["markovian"]
    assert a["success"][0] >= m["success"][0], (
        f"{edit}: Alg. 1 succeeds on {a['success'][0]:.3f}, Markovian on {m['success'][0]:.3f}")
    assert a["identity"][0] >= m["identity"][0], (
        f"{edit}: identity Alg. 1 {a['identity'][0]:.3f} < Markovian {m['identity'][0]:.3f}")
