"""The fault-injection script itself (python -m bench.tools.faults); each case also has its own test."""

import pytest

from bench.tools import faults


def test_case_names_are_unique_and_an_unknown_one_is_refused(capsys):
    names = [c.name for c in faults.cases()]
    assert len(names) == len(set(names)) and {c.kind for c in faults.cases()} == {"input", "fault"}
    with pytest.raises(SystemExit):
        faults.main(["--cases", "no such case"])
    assert "--cases: none of 'no such case'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_script_runs_an_input_and_a_fault_end_to_end(capsys):
    assert faults.main(["--cases", "sweep name ../..,sweep with a failed job"]) == 0
    assert (
        "bad inputs answered before loading: 1 of 1; faults survived with nothing lost: 1 of 1"
        in capsys.readouterr().out
    )
