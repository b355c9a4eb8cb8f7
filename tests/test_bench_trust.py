"""The step benchmark marks figures it cannot trust (a pure function of a case's figures)."""

from forgetting.bench.trust import advice, untrusted


def case(of_ceiling=0.8, ours=(950, 1000, 1050), ceiling=(1200, 1250, 1300)) -> dict:
    return {"of_ceiling": of_ceiling, "ours_img_s": ours[1], "ours_spread": [ours[0], ours[2]],
            "ceiling_img_s": ceiling[1], "ceiling_spread": [ceiling[0], ceiling[2]]}


def test_steady_rounds_below_the_ceiling_are_trusted():
    assert untrusted(case()) == []
    assert untrusted(case(of_ceiling=1.0, ours=(900, 1000, 1100))) == []  # 20%: the limit


def test_ours_above_the_ceiling_is_marked():
    assert untrusted(case(of_ceiling=1.72)) == ["ours above the ceiling (172%)"]


def test_rounds_that_disagree_are_marked():
    assert untrusted(case(ours=(600, 1000, 1300))) == ["rounds of ours spread 70% (> 20%)"]
    assert untrusted(case(ceiling=(1000, 1250, 1600))) == ["rounds of ceiling spread 48% (> 20%)"]


def test_the_advice_says_to_rerun_with_more_rounds():
    line = advice(["ours above the ceiling (172%)"], repeats=3)
    assert line.strip().startswith("not trusted: ours above the ceiling (172%)")
    assert "rerun with more rounds, e.g. --repeats 7" in line
