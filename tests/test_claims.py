"""The reproduction scorecard: a claim holds only when the figures' tables show it beyond the noise of what was
measured, fails when they show the opposite, and is inconclusive otherwise."""
import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

from pipeline_lib.activations import separation
from pipeline_lib.claims import ClaimError, judge, markdown, scorecard, window, write_scorecard
from pipeline_lib.filtering import filtering_table


def rates(series, values, n=400, **columns):
    """Table rows of one series: each value a rate measured on n test images."""
    hits = np.round(np.asarray(values) * n).astype(int)
    return pd.DataFrame({"series": series, "target": range(len(values)), "seed": 0, "amount": "n50",
                         "asr_labelled": hits / n, "asr_labelled_hits": hits, "asr_labelled_n": n, **columns})


def asr(series, **kw):
    return {"figure": "f", "metric": "asr_labelled", "series": series, **kw}


def claim(**kw):
    return {"source": "004 thesis, Figure 3-8", **kw}


def test_one_victims_rate_has_the_jeffreys_interval_of_its_test_images():
    table = rates("a", [0.3], n=200)
    row = judge("one", claim(at_least=0.1, measured=asr("a")), {"f": table})
    exact = beta.ppf([0.025, 0.975], 60 + 0.5, 140 + 0.5)  # 60 hits of 200, Jeffreys prior
    assert row["measured"] == pytest.approx(0.3)
    assert (row["measured_low"], row["measured_high"]) == pytest.approx(tuple(exact), abs=0.004)
    assert row["verdict"] == "holds" and row["rows"] == 1 and row["seeds"] == 1


def test_a_reported_number_holds_inside_its_band_fails_outside_and_is_inconclusive_across_it():
    tables = {"f": rates("a", [0.20], n=2000)}
    verdicts = {reported: judge("x", claim(reported=reported, measured=asr("a")), tables)["verdict"]
                for reported in (0.20, 0.40, 0.2727)}
    assert verdicts == {0.20: "holds", 0.40: "fails", 0.2727: "inconclusive"}  # 0.2727's odds / 1.5: 0.20, the edge


def test_one_tolerance_rule_means_the_same_near_0_and_1_as_in_the_middle():
    assert window(0.5, "asr_labelled") == pytest.approx((0.4, 0.6))     # a factor 1.5 of the odds: +-0.10 at 50%
    assert window(0.01, "asr_labelled") == pytest.approx((1 / 149.5, 1.5 / 100.5))  # 1% spans 0.67%..1.49%, not 0..11%
    low, high = window(0.99, "clean_accuracy")
    assert (1 - high, 1 - low) == pytest.approx(window(0.01, "asr_labelled"))     # symmetric about 50%
    assert window(0.2, "test_loss") == pytest.approx((0.2 / 1.5, 0.3))            # a loss: a factor 1.5 of itself
    assert window(0.5, "asr_labelled", factor=2.0) == pytest.approx((1 / 3, 2 / 3))


def test_a_reported_0_or_1_is_read_with_the_precision_the_seed_printed():
    assert window(0.0, "asr_labelled", precision=0.01) == pytest.approx((0.0, 0.0075 / 1.0025))  # "0%": under 0.5%
    assert window(1.0, "clean_accuracy", precision=0.01)[1] == 1.0
    tables = {"f": rates("a", [0.0], n=2000)}
    assert judge("x", claim(reported=0.0, precision=0.01, measured=asr("a")), tables)["verdict"] == "holds"


def test_the_factor_comes_from_the_config():
    tables = {"f": rates("a", [0.30], n=20000)}
    assert judge("x", claim(reported=0.25, measured=asr("a")), tables)["verdict"] == "holds"   # odds 0.43 <= 0.5
    assert judge("x", claim(reported=0.25, measured=asr("a")), tables, factor=1.2)["verdict"] == "fails"


def test_bounds_are_one_sided():
    tables = {"f": rates("a", [0.79], n=2000)}
    assert judge("x", claim(at_most=0.80, measured=asr("a")), tables)["verdict"] == "inconclusive"  # "just under 80%"
    assert judge("x", claim(at_most=0.85, measured=asr("a")), tables)["verdict"] == "holds"
    assert judge("x", claim(at_least=0.85, measured=asr("a")), tables)["verdict"] == "fails"


def test_an_ordering_within_noise_is_inconclusive_and_a_clear_one_holds_or_fails():
    near = {"f": pd.concat([rates("a", [0.265] * 10), rates("b", [0.268] * 10)])}  # the demo's black/white box
    far = {"f": pd.concat([rates("a", [0.13] * 10), rates("b", [1.0] * 10)])}      # the demo's DP-SGD
    assert judge("x", claim(measured=asr("a"), below=asr("b")), near)["verdict"] == "inconclusive"
    clear = judge("x", claim(measured=asr("a"), below=asr("b")), far)
    assert clear["verdict"] == "holds" and clear["statistic"] == pytest.approx(0.87)
    assert clear["statistic_low"] > 0.8 and clear["compared"] == pytest.approx(1.0)
    assert judge("x", claim(measured=asr("a"), above=asr("b")), far)["verdict"] == "fails"


def test_substantially_needs_the_difference_beyond_its_margin():
    tables = {"f": pd.concat([rates("a", [0.60] * 10), rates("b", [0.50] * 10)])}
    assert judge("x", claim(measured=asr("a"), above=asr("b")), tables)["verdict"] == "holds"
    row = judge("x", claim(measured=asr("a"), above=asr("b"), by_at_least=0.3), tables)
    assert row["verdict"] == "fails" and row["criterion"] == "difference > 0.3"


def test_almost_all_classes_counts_the_classes_on_which_the_ordering_holds():
    mine = [0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1, 0.1]  # higher on 8 of 10 targets, far lower on 2
    tables = {"f": pd.concat([rates("a", mine), rates("b", [0.5] * 10)])}
    ordering = claim(measured=asr("a"), above=asr("b"), per="target")
    assert judge("x", {**ordering, "in_at_least": 8}, tables)["verdict"] == "holds"
    row = judge("x", {**ordering, "in_at_least": 9}, tables)
    assert row["verdict"] == "fails" and row["statistic"] == 8 and row["levels"] == 10
    assert judge("x", claim(measured=asr("a"), above=asr("b")), tables)["verdict"] == "holds"  # the mean hides it


def test_a_trend_holds_when_every_step_is_beyond_noise_and_fails_on_a_clear_step_back():
    def along_eps(values):
        return {"f": pd.concat([rates(f"eps {e}", [v] * 10) for e, v in zip((150, 300, 600), values)])}
    rising = claim(measured=asr(["eps 150", "eps 300", "eps 600"]), trend="increasing", along="series")
    assert judge("x", rising, along_eps([0.2, 0.4, 0.6]))["verdict"] == "holds"
    assert judge("x", rising, along_eps([0.2, 0.6, 0.4]))["verdict"] == "fails"
    assert judge("x", rising, along_eps([0.2, 0.4, 0.401]))["verdict"] == "inconclusive"
    assert judge("x", {**rising, "trend": "decreasing"}, along_eps([0.6, 0.4, 0.2]))["verdict"] == "holds"
    assert judge("x", {**rising, "trend": "decreasing"}, along_eps([0.2, 0.4, 0.6]))["verdict"] == "fails"


def test_several_seeds_widen_the_interval_by_the_spread_between_them():
    one = rates("a", [0.5])
    three = pd.concat([one.assign(seed=s, asr_labelled=v, asr_labelled_hits=int(v * 400))
                       for s, v in enumerate([0.3, 0.5, 0.7])])
    narrow = judge("x", claim(at_least=0.1, measured=asr("a")), {"f": one})
    wide = judge("x", claim(at_least=0.1, measured=asr("a")), {"f": three})
    assert wide["seeds"] == 3 and wide["measured"] == pytest.approx(0.5)
    assert wide["measured_high"] - wide["measured_low"] > 3 * (narrow["measured_high"] - narrow["measured_low"])


def test_a_mean_of_per_sample_values_gets_the_normal_interval_of_its_standard_error():
    table = pd.DataFrame({"series": "a", "seed": 0, "target": 0, "silhouette": [0.4], "silhouette_se": [0.05]})
    row = judge("x", claim(at_least=0.35, measured={"figure": "f", "metric": "silhouette"}), {"f": table})
    assert (row["measured_low"], row["measured_high"]) == pytest.approx((0.4 - 0.098, 0.4 + 0.098), abs=0.004)
    assert row["verdict"] == "inconclusive"                      # 0.4 is above 0.35, but not beyond its noise
    loss = pd.DataFrame({"series": "a", "seed": 0, "target": 0, "test_loss": [0.2], "test_loss_se": [0.001]})
    assert judge("x", claim(reported=0.25, measured={"figure": "f", "metric": "test_loss"}),
                 {"f": loss})["verdict"] == "holds"                          # 0.2 in [0.25 / 1.5, 0.375]
    near_zero = loss.assign(test_loss=[0.001], test_loss_se=[0.01])
    row = judge("x", claim(at_most=0.1, measured={"figure": "f", "metric": "test_loss"}), {"f": near_zero})
    assert row["measured_low"] == 0.0 and row["measured_high"] == pytest.approx(0.021, abs=0.002)  # never negative


def test_a_statistic_with_no_spread_recorded_is_taken_as_exactly_determined():
    table = pd.DataFrame({"series": "a", "seed": 0, "target": 0, "nc_names_target": [1.0]})
    row = judge("x", claim(at_least=1.0, measured={"figure": "f", "metric": "nc_names_target"}), {"f": table})
    assert (row["measured_low"], row["measured_high"], row["verdict"]) == (1.0, 1.0, "holds")


def test_der_is_drawn_from_the_draws_of_its_four_rates():
    n = 1000
    table = pd.DataFrame({"series": "a", "seed": 0, "target": 0, "defence": "d", "der": [0.9 - 0.025],
                          "asr_labelled_hits": [100], "asr_labelled_n": n, "clean_accuracy_hits": [850],
                          "clean_accuracy_n": n, "twin_asr_labelled_hits": [900], "twin_asr_labelled_n": n,
                          "twin_clean_accuracy_hits": [900], "twin_clean_accuracy_n": n})
    row = judge("x", claim(at_least=0.8, measured={"figure": "f", "metric": "der"}), {"f": table})
    low, high = row["measured_low"], row["measured_high"]
    # (ASR drop 0.8 - accuracy drop 0.05 + 1) / 2; the drops' spread: sqrt(sum of four binomial variances) / 2
    spread = 1.96 * np.sqrt(0.1 * 0.9 + 0.85 * 0.15 + 2 * 0.9 * 0.1) / np.sqrt(n) / 2
    assert (low, high) == pytest.approx((0.875 - spread, 0.875 + spread), abs=0.004)
    assert row["verdict"] == "holds"


def test_filtering_loss_trace_and_tsne_tables_are_scored():
    probability = np.linspace(0, 1, 100)
    gu = {"probability": probability, "poisoned": np.arange(100) < 10}           # the 10 lowest are the poisons
    lc = {"probability": probability, "poisoned": np.arange(100) % 10 == 5}      # spread through the ranking
    sets = [{"attack": a, "target": 0, "amount": "n10", "seed": 0} for a in ("gu", "lc")]
    filtering = filtering_table([gu, lc], ["Gu et al.", "label-consistent"], sets)
    assert filtering["found_among_lowest"].tolist() == [1.0, 0.1]
    assert filtering_table([lc], ["lc"], sets[1:], inspected=50)["found_among_lowest"].tolist() == [0.5]
    lowest = {"figure": "filter", "metric": "found_among_lowest"}
    tables = {"filter": filtering}
    assert judge("x", claim(measured={**lowest, "series": "Gu et al."}, above={**lowest, "series": "label-consistent"}),
                 tables)["verdict"] == "holds"
    assert judge("x", claim(measured={**lowest, "series": "label-consistent"}, at_least=0.5),
                 tables)["verdict"] == "fails"

    rng = np.random.default_rng(0)
    apart = np.concatenate([rng.normal(0, 1, (50, 8)), rng.normal(6, 1, (10, 8))])
    mixed = np.concatenate([rng.normal(0, 1, (50, 8)), rng.normal(0, 1, (10, 8))])
    poisoned = np.arange(60) >= 50
    assert separation(apart, poisoned)["knn_purity"] > 0.95 and separation(apart, poisoned)["silhouette"] > 0.5
    assert separation(mixed, poisoned)["silhouette"] < 0.1
    tsne = pd.DataFrame([{"series": "normal", "seed": 0, **separation(apart, poisoned)},
                         {"series": "adversarial", "seed": 0, **separation(mixed, poisoned)}])
    sil = {"figure": "tsne", "metric": "silhouette"}
    assert judge("x", claim(measured={**sil, "series": "normal"}, above={**sil, "series": "adversarial"}),
                 {"tsne": tsne})["verdict"] == "holds"

    trace = rates("a", [0.5]).assign(final_loss_poisoned_without_trigger=[2.3], final_loss_poisoned=[0.01])
    high_loss = claim(measured={"figure": "f", "metric": "final_loss_poisoned_without_trigger"},
                      above={"figure": "f", "metric": "final_loss_poisoned"})
    assert judge("x", high_loss, {"f": trace})["verdict"] == "holds"
    assert judge("x", {**high_loss, "by_at_least": 3.0}, {"f": trace})["verdict"] == "fails"


def test_a_measure_selecting_no_rows_is_named_in_one_line():
    with pytest.raises(ClaimError, match=r"^claim 'x': no rows of figure 'f' have asr_labelled where .*n5000"):
        judge("x", claim(reported=0.2, measured=asr("a", where={"amount": "n5000"})),
              {"f": rates("a", [0.2])})


def test_the_scorecard_is_written_as_csv_markdown_and_a_figure_counting_each_verdict(tmp_path):
    table = pd.concat([rates("a", [0.9] * 10), rates("b", [0.1] * 10)])
    table.to_csv(tmp_path / "f.csv", index=False)
    claims = {"holds": claim(statement="a beats b", measured=asr("a"), above=asr("b")),
              "fails": claim(measured=asr("a"), below=asr("b")),
              "unsure": claim(reported=0.1429, measured=asr("b"))}  # its window starts at 0.1000
    write_scorecard(claims, {"f": tmp_path / "f.csv"}, tmp_path / "s.csv", tmp_path / "s.md", tmp_path / "s.png")
    card = pd.read_csv(tmp_path / "s.csv")
    assert list(card.columns[:5]) == ["claim", "source", "statement", "reported", "measured"]
    assert card["verdict"].tolist() == ["holds", "fails", "inconclusive"]
    md = (tmp_path / "s.md").read_text().splitlines()
    assert md[2].startswith("1 hold, 1 fail, 1 inconclusive (of 3 claims)")
    assert md[6].endswith("| holds |") and md[7].endswith("| fails |") and md[8].endswith("| inconclusive |")
    assert markdown(scorecard(claims, {"f": table}), "t") == (tmp_path / "s.md").read_text().replace(
        "Reproduction scorecard", "t")
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def test_no_substantial_effect_holds_when_the_difference_stays_within_its_margin():
    tables = {"f": pd.concat([rates("poisoned", [0.79] * 10, n=1000), rates("clean", [0.80] * 10, n=1000),
                              rates("hurt", [0.60] * 10, n=1000)])}
    close = claim(measured=asr("poisoned"), close_to=asr("clean"), within=0.03)
    assert judge("x", close, tables)["verdict"] == "holds"
    assert judge("x", {**close, "close_to": asr("hurt")}, tables)["verdict"] == "fails"
    assert judge("x", {**close, "within": 0.01}, tables)["verdict"] == "inconclusive"


def test_an_interval_always_holds_the_observed_value_and_closes_at_a_perfect_rate():
    row = judge("x", claim(at_least=0.5, measured=asr("a")), {"f": rates("a", [1.0], n=10)})
    assert row["measured_high"] == 1.0 and row["measured_low"] == pytest.approx(beta.ppf(0.025, 10.5, 0.5), abs=0.01)
