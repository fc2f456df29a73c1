def test_an_accuracy_no_better_than_the_most_common_label_is_called_not_learnt():
    from objectives.trial import baseline_note

    assert "NOT LEARNT" in baseline_note(0.585, 0.58) and "NOT LEARNT" not in baseline_note(0.70, 0.58)
    assert baseline_note(None, 0.58) == "" and baseline_note(0.7, None) == ""


def test_a_selection_that_learns_nothing_says_so_in_its_reason():
    from adaptive.selection import Candidate, choose
    from objectives.trial import TrialSettings
    from operators.settings import preset

    settings = TrialSettings(preset("horizontal-only"))
    useless = Candidate("s", 0, settings, 0.58, 1.0, 0.05, baseline_accuracy=0.58)
    assert "NOT LEARNT" in choose([useless], "max-accuracy").reason
    useful = Candidate("s", 1, settings, 0.75, 1.0, 0.9, baseline_accuracy=0.58)
    assert "NOT LEARNT" not in choose([useful, useless], "max-accuracy").reason
