"""The reproduction scorecard: a claim holds only when the figures' tables bear it out."""
import pandas as pd
import pytest

from pipeline_lib.claims import ClaimError, judge, markdown, scorecard, write_scorecard

TABLES = {
    "fig3-2": pd.DataFrame({"series": [None] * 4, "target": [0, 1, 0, 1], "amount": ["p0.25", "p0.25", "p1", "p1"],
                            "asr_labelled": [0.1, 0.6, 0.3, 0.9]}),
    "fig5-1": pd.DataFrame({"series": ["noise 0", "noise 0", "noise 1", "noise 1"], "amount": ["n150", "n1500"] * 2,
                            "asr_classified": [0.5, 0.92, 0.1, 0.2], "defence": ["dp_0", "dp_0", "dp_1", "dp_1"]}),
}


def claim(**kw):
    return {"source": "004 thesis, Figure 5-1", **kw}


def test_a_reported_number_holds_within_its_tolerance_and_a_false_one_does_not():
    measured = {"figure": "fig5-1", "metric": "asr_classified", "series": "noise 1", "where": {"amount": "n1500"}}
    true = judge("true", claim(reported=0.20, tolerance=0.05, measured=measured), TABLES)
    false = judge("false", claim(reported=0.92, tolerance=0.05, measured=measured), TABLES)
    assert true["measured"] == pytest.approx(0.2) and true["holds"]
    assert false["measured"] == pytest.approx(0.2) and not false["holds"]


def test_an_ordering_compares_two_measures_and_reports_both():
    noise = lambda s: {"figure": "fig5-1", "metric": "asr_classified", "series": s}  # noqa: E731
    below = judge("dp", claim(measured=noise("noise 1"), below=noise("noise 0")), TABLES)
    above = judge("dp", claim(measured=noise("noise 1"), above=noise("noise 0")), TABLES)
    assert (below["measured"], below["compared"]) == pytest.approx((0.15, 0.71))
    assert below["holds"] and not above["holds"]
    assert "fig5-1 asr_classified, mean, series noise 1 below fig5-1" in below["judged_by"]


def test_counts_above_a_threshold_and_bounds():
    count = {"figure": "fig3-2", "metric": "asr_labelled", "where": {"amount": "p0.25"}, "aggregate": "count_above",
             "threshold": 0.5}
    assert judge("one", claim(reported=1, tolerance=0, measured=count), TABLES)["holds"]
    worst = {"figure": "fig3-2", "metric": "asr_labelled", "where": {"amount": ["p0.25", "p1"], "target": 1},
             "aggregate": "min"}
    assert judge("min", claim(at_least=0.6, measured=worst), TABLES)["holds"]
    assert not judge("min", claim(at_least=0.61, measured=worst), TABLES)["holds"]
    assert judge("min", claim(at_most=0.6, measured=worst), TABLES)["reported"] == 0.6


def test_a_measure_selecting_no_rows_is_named_in_one_line():
    missing = {"figure": "fig5-1", "metric": "asr_classified", "series": "noise 1", "where": {"amount": "n5000"}}
    with pytest.raises(ClaimError, match=r"^claim 'x': no rows of figure 'fig5-1' have asr_classified where .*n5000"):
        judge("x", claim(reported=0.2, tolerance=0.05, measured=missing), TABLES)


def test_the_scorecard_is_written_as_csv_and_a_markdown_table_counting_what_holds(tmp_path):
    for name, table in TABLES.items():
        table.to_csv(tmp_path / f"{name}.csv", index=False)
    claims = {"dp-1": claim(statement="noise 1 gives 20%", reported=0.2, tolerance=0.05,
                            measured={"figure": "fig5-1", "metric": "asr_classified", "series": "noise 1",
                                      "where": {"amount": "n1500"}}),
              "dp-0": claim(reported=0.5, tolerance=0.01,
                            measured={"figure": "fig5-1", "metric": "asr_classified", "series": "noise 0"})}
    write_scorecard(claims, {n: tmp_path / f"{n}.csv" for n in TABLES}, tmp_path / "s.csv", tmp_path / "s.md")
    card = pd.read_csv(tmp_path / "s.csv")
    assert list(card.columns[:5]) == ["claim", "source", "statement", "reported", "measured"]
    assert card["holds"].tolist() == [True, False] and card["measured"].tolist() == pytest.approx([0.2, 0.71])
    md = (tmp_path / "s.md").read_text().splitlines()
    assert md[2] == "1 of 2 claims hold." and md[6].endswith("| yes |") and md[7].endswith("| no |")
    assert markdown(scorecard(claims, TABLES), "t") == (tmp_path / "s.md").read_text().replace(
        "Reproduction scorecard", "t")
