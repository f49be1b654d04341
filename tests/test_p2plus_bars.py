"""Issue 6's bars on the shipped toy-t2i, with notebook 06's settings: Table 2 in miniature over 30 photo pairs."""
import numpy as np
import pytest
import torch

from diffnb import editbench as E
from diffnb import metrics, zoo

pytestmark = pytest.mark.slow

STEPS, GUIDANCE, TAU_C, TAU_S, TAU_U = 20, 5.0, 0.6, 0.8, 0.5   # the official code's τ defaults


@pytest.fixture(scope="module")
def measured():
    b, attr, clip = zoo.load("toy-t2i"), zoo.load("toy-attr").model, zoo.load("toy-clip")
    pairs = E.edit_pairs(10, seed=0)
    # the rows these bars read (no SDEdit: every other method's edits are the same with or without it, bit for bit)
    run = E.run_methods(b, pairs, methods=("ddim", "p2p", "p2plus"), guidance_scale=GUIDANCE, num_inference_steps=STEPS,
                        tau_c=TAU_C, tau_s=TAU_S, tau_u=TAU_U, null_inner_steps=4, null_lr=5e-2, seed=0)
    scores = E.score(run, attr, clip, metrics.toy_lpips(attr))
    kinds = np.array([p.kind for p in pairs])
    return scores, {k: torch.from_numpy(kinds == k) for k in E.KINDS}


# A measured miss since the 4,459-step toy-t2i (2026-11-29; the 2,000-step model met it): P2P's NS-LPIPS on the
# 10 colour swaps is 0.718 against DDIM word swap's 0.998, a ratio of 0.72 against the bar's 0.5. At eta 0 the
# retrained model keeps more of the layout under a plain word swap, so the DDIM row changes the outside less than
# before; P2P still changes it less (notebook 06, Table 2). Strict: the test turns red once the bar is met again.
@pytest.mark.xfail(strict=True, reason="4,459-step toy-t2i: P2P's NS-LPIPS on colour swaps 0.718 vs DDIM word "
                                       "swap's 0.998 (ratio 0.72, bar 0.5), measured 2026-11-29")
def test_p2p_keeps_the_outside_on_colour_swaps(measured):
    scores, kind = measured
    c = kind["colour"]
    p2p, ddim = scores["p2p"].ns_lpips[c].mean(), scores["ddim"].ns_lpips[c].mean()
    assert p2p <= 0.5 * ddim, f"P2P's NS-LPIPS on colour swaps {p2p:.3f} > 0.5 x DDIM word swap's {ddim:.3f}"


def test_p2p_changes_the_outside_less_than_a_word_swap_on_colour_swaps(measured):
    scores, kind = measured
    c = kind["colour"]
    p2p, ddim = scores["p2p"].ns_lpips[c].mean(), scores["ddim"].ns_lpips[c].mean()
    assert p2p < ddim, f"P2P's NS-LPIPS on colour swaps {p2p:.3f} is not below DDIM word swap's {ddim:.3f}"


def test_p2plus_structure_within_20_percent_of_p2p_on_subject_swaps(measured):
    scores, kind = measured
    s = kind["subject"]
    assert scores["p2plus"].structure[s].mean() <= 1.2 * scores["p2p"].structure[s].mean()


# The toy world disagrees with the paper's Fig. 5 claim (issue 6 stays open on this bar). The 70% is this repository's
# bar, not the paper's (the paper shows three examples, P2Plus above P2P on each). Measured on the 4,459-step toy-t2i
# (issue 14), on the 10 subject swaps null-text-inverted as one batch of their own (this fixture inverts all 30
# together, and null-text's early stop is per batch, so the fixture's numbers may differ a little): P2Plus's CLIP
# score beats P2P's on 3 of the 10 (mean 0.7267 vs 0.7276), and both draw the target subject on all 10 (toy-attr);
# the fixture itself, run on the same checkpoint, xfails this test as expected. P2P already draws the new subject on
# toy-t2i, so there is no structural failure to fix, and at tau_u = 0.5 the unconditional injection changes the edit
# very little (notebook 06, §3-§4). (The 2,000-step checkpoint measured 4 of 10, mean 0.736 vs 0.737.)
# The tau_u sweep on the same 10 (mean CLIP; share of pairs where it beats P2P's; structure distance), with local
# blending: 0 (P2P) 0.7276 / - / 0.0647; 0.25 0.7280 / 4 of 10 / 0.0647; 0.5 0.7267 / 3 / 0.0653; 0.75 0.7352 / 5 /
# 0.0655; 1 0.7255 / 5 / 0.0800 (target subject read in 9 of 10). Without blending: 0 0.7007 / - / 0.0815; 0.25
# 0.7009 / 5 / 0.0817; 0.5 0.7045 / 5 / 0.0828; 0.75 0.7094 / 7 / 0.0833; 1 0.6421 / 4 / 0.1185 (9 of 10). No
# tau_u reaches 7 of 10 with blending; without it, 0.75 does, at a lower CLIP score than blended P2P's.
# Strict: the test turns red the moment a retrained toy-t2i meets the bar, and the marker is then removed.
@pytest.mark.xfail(strict=True, reason="toy-t2i (4,459 steps): P2Plus's CLIP beats P2P's on 3 of 10 subject swaps "
                                       "(mean 0.7267 vs 0.7276); see notebook 06")
def test_p2plus_follows_subject_swaps_better_than_p2p(measured):
    scores, kind = measured
    s = kind["subject"]
    assert (scores["p2plus"].clip[s] > scores["p2p"].clip[s]).float().mean() >= 0.70

