def test_an_accuracy_no_better_than_the_most_common_label_is_called_not_learnt():
    from objectives.trial import baseline_note

    assert "NOT LEARNT" in baseline_note(0.585, 0.58) and "NOT LEARNT" not in baseline_note(0.70, 0.58)
    assert baseline_note(None, 0.58) == "" and baseline_note(0.7, None) == ""
