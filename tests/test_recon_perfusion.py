"""Normal limits of the polar map and the perfusion scores against them: a defect's territory
called and no other, a normal map read normal, SDS of a stress and a rest map, a study without a
sex, and bad databases refused in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from infra.errors import UserError
from recon.spect import normals, scores
from recon.spect.polarmap import PolarMap
from recon.spect.reading import limits_for

SEGMENT_OF = np.repeat(np.arange(1, 18), 40)  # 40 samples per segment


def polar(rng: np.random.Generator, reduced: dict[int, float] | None = None) -> PolarMap:
    """A polar map of about 80 % everywhere (5 % noise per sample), with ``reduced``
    segments' samples times their factor."""
    samples = 80.0 * (1.0 + 0.05 * rng.standard_normal(SEGMENT_OF.size))
    for seg, factor in (reduced or {}).items():
        samples[np.equal(SEGMENT_OF, seg)] *= factor
    means = np.bincount(SEGMENT_OF - 1, samples, 17) / np.bincount(SEGMENT_OF - 1, None, 17)
    return PolarMap(means, samples, SEGMENT_OF)


@pytest.fixture(scope="module")
def limits() -> normals.NormalLimits:
    rng = np.random.default_rng(5)
    return normals.build([polar(rng) for _ in range(20)], "spect-general", "calculated", "F")


def test_a_normal_map_scores_zero_and_a_defect_its_own_territory(limits):
    rng = np.random.default_rng(6)
    normal = scores.score(polar(rng), limits)
    assert normal.summed_score == 0 and normal.territories == () and normal.tpd_percent < 0.5
    # mid and apical inferior at 45 % less: the RCA's, nothing else
    defect = scores.score(polar(rng, {10: 0.55, 15: 0.55, 4: 0.55}), limits)
    assert defect.territories == ("RCA",)
    assert set(defect.abnormal_segments) == {4, 10, 15}
    assert all(defect.segment_scores[s - 1] >= 1 for s in (4, 10, 15))
    assert 3.0 < defect.tpd_percent < 3 / 17 * 100
    absent = scores.score(polar(rng, {7: 0.0}), limits)
    assert absent.segment_scores[6] == 4  # no counts at all: absent uptake


def test_each_samples_spread_is_its_segments_over_the_normals():
    """The limits spread a sample by how its segment's mean varies from normal to normal, not
    by how the sample itself does: a segment whose samples scatter but whose mean holds has a
    narrow limit, one whose mean varies a wide one."""
    rng = np.random.default_rng(9)
    maps = [polar(rng, {2: min(0.8 + 0.1 * rng.standard_normal(), 0.95)}) for _ in range(30)]
    built = normals.build(maps, "spect-general", "calculated", "M")
    seg2 = np.equal(SEGMENT_OF, 2)
    want = np.std([m.percent[1] for m in maps], ddof=1)
    assert np.allclose(built.sd_percent[seg2], want)
    assert 5.0 < want < 12.0 and built.sd_percent[~seg2].max() < 2.0  # 4 points a sample


def test_summed_difference_counts_what_rest_recovers(limits):
    rng = np.random.default_rng(7)
    stress = scores.score(polar(rng, {5: 0.5, 11: 0.5}), limits)
    rest = scores.score(polar(rng, {5: 0.5}), limits)  # 11 recovers at rest: ischaemia
    assert scores.summed_difference(stress, rest) == stress.segment_scores[10] > 0


def test_without_a_sex_both_sexes_limits_score_it(limits):
    rng = np.random.default_rng(8)
    men = normals.build([polar(rng, {4: 0.8, 10: 0.8}) for _ in range(20)], "spect-general",
                        "calculated", "M")  # men's inferior wall reads lower
    pm = polar(rng, {4: 0.7, 10: 0.7})
    out = scores.score_by_sex(pm, {"F": limits, "M": men}, None)
    assert out["sex"] is None and "both" in out["note"]
    assert out["by_sex"]["F"]["abnormal_territories"] == ["RCA"]
    assert out["by_sex"]["M"]["abnormal_territories"] == []
    assert out["abnormal_territories"] == [] and out["equivocal_territories"] == ["RCA"]
    assert scores.score_by_sex(pm, {"F": limits, "M": men}, "F")["abnormal_territories"] == [
        "RCA"]


def test_databases_round_trip_and_bad_ones_are_one_line(limits, tmp_path):
    path = normals.write(tmp_path / "site.json", [limits])
    back = normals.read(path)[0]
    assert back.label == limits.label and np.allclose(back.mean_percent, limits.mean_percent,
                                                      atol=0.01)
    assert set(limits_for("spect-general", "calculated", SEGMENT_OF.size, path)) == {"F"}
    with pytest.raises(UserError, match="no normal limits for spect-general with none"):
        limits_for("spect-general", "none", SEGMENT_OF.size, path)
    with pytest.raises(UserError, match="of camera spect-general, not of this scan's other"):
        limits_for("other", "calculated", SEGMENT_OF.size, path)
    with pytest.raises(UserError, match="have 680 samples, this polar map 99"):
        limits_for("spect-general", "calculated", 99, path)
    cut = tmp_path / "cut.json"
    cut.write_text(path.read_text()[:200])
    with pytest.raises(UserError, match=r"^normal limits .*cut.json: not JSON"):
        normals.read(cut)
    with pytest.raises(UserError, match="cannot read it"):
        normals.read(tmp_path / "missing.json")
    cut.write_text(json.dumps({"format": normals.FORMAT, "limits": [{"camera": "x"}]}))
    with pytest.raises(UserError, match="not a database"):
        normals.read(cut)
    old = json.loads(path.read_text()) | {"format": 1}  # each sample's own spread: rebuild
    cut.write_text(json.dumps(old))
    with pytest.raises(UserError, match=r"not a database of format 2 \(rebuild it"):
        normals.read(cut)
    with pytest.raises(UserError, match="at least 3 normal patients"):
        normals.build([polar(np.random.default_rng(1))], "spect-general", "calculated", "M")



def test_the_shipped_limits_match_the_polar_maps_sampling():
    """The product's limits for its adult camera: both sexes, four corrections (the learned map's
    too), each of the polar map's samples."""
    from recon.grid import Grid
    from recon.spect.polarmap import polar_map

    shipped = normals.shipped("spect-general")
    assert {(x.correction, x.sex) for x in shipped} == {
        (c, s) for c in ("calculated", "measured", "none", "learned") for s in ("F", "M")}
    grid = Grid((40, 40, 40), (4.0, 4.0, 4.0), (-78.0, -78.0, -78.0))
    pm = polar_map(grid.image(np.ones((40, 40, 40), np.float32), "counts"), (0, 0, 20),
                   (0, 0, -20), (0, -1, 0))
    assert all(x.mean_percent.size == pm.samples.size and x.patients >= 3 for x in shipped)
    assert normals.shipped("spect-dual-head") == []


def test_writing_one_corrections_limits_keeps_the_databases_others(limits, tmp_path):
    """``normallimits --write`` into an existing database replaces the corrections and sexes it
    built and keeps the rest (the learned map's limits beside the calculated map's)."""
    from recon.validation.normallimits import merged

    path = normals.write(tmp_path / "db.json", [limits])
    rng = np.random.default_rng(3)
    learned = normals.build([polar(rng) for _ in range(5)], "spect-general", "learned", "F")
    rebuilt = normals.build([polar(rng) for _ in range(6)], "spect-general", "calculated", "F")
    normals.write(path, merged(path, [learned]))
    assert sorted(x.correction for x in normals.read(path)) == ["calculated", "learned"]
    normals.write(path, merged(path, [rebuilt]))
    got = {x.correction: x.patients for x in normals.read(path)}
    assert got == {"calculated": 6, "learned": 5}
    assert merged(tmp_path / "new.json", [learned]) == [learned]


def test_the_validations_summary_counts_the_calls_and_ranks_tpd():
    """``normallimits``' summary: normals read normal, the large defects' territories, and the
    area under TPD's ROC curve (a defect outscoring a normal, ties half)."""
    from recon.validation.normallimits import roc_auc, summary

    def row(territory: str, severity: float, extent: float, tpd: float, called: str) -> dict:
        right = int(territory in called.split()) if territory != "none" else ""
        return {"map": "learned", "territory": territory, "severity": severity,
                "extent_percent": extent, "tpd_percent": tpd, "called": called, "right": right,
                "other": int(bool(set(called.split()) - {territory, "none"}))}

    table = [row("none", 0, 0, 0.0, "none"), row("none", 0, 0, 1.0, "none"),
             row("RCA", 0.5, 12.0, 5.0, "RCA"), row("LAD", 0.3, 5.0, 0.5, "none")]
    line = summary(table)[0]
    assert "normal read normal 2/2" in line and "right territory 1/1, no other 1/1" in line
    assert "TPD's AUC 0.75 (large defects 1.00)" in line
    assert roc_auc([1.0], [1.0]) == 0.5 and np.isnan(roc_auc([], [1.0]))
