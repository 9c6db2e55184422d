def ipo_loss(pol_c, pol_r, ref_c, ref_r, beta):
    """IPO: mean over pairs of (h − 1/(2β))², h = (π_c − ref_c) − (π_r − ref_r).

    DPO's −log σ(βh) keeps falling as h grows, so on pairs the model can separate the margin
    runs off; IPO's square has its minimum at h = 1/(2β) and pulls the margin back to it.
    """
    margin = (pol_c - ref_c) - (pol_r - ref_r)
    return ((margin - 1 / (2 * beta)) ** 2).mean()
