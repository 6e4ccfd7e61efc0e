"""The registries refuse a second definition of a name, naming both, instead of keeping the last silently."""

import pytest

from bench import families, methods, tasks
from bench.methods import METHODS, Method, register


def test_a_second_method_of_a_name_is_refused_naming_both(monkeypatch):
    monkeypatch.setattr(methods, "METHODS", dict(METHODS))  # the real registry stays as it is

    class Lora(Method):
        name = "lora"

    with pytest.raises(
        ValueError,
        match=r"method name 'lora' is taken: bench\.methods\.lora\.Lora and "
        r"(tests\.)?test_registries\..*Lora both register it",
    ):
        register(Lora)


def test_a_second_task_of_a_name_is_refused_naming_both(monkeypatch):
    monkeypatch.setattr(tasks, "TASKS", dict(tasks.TASKS))

    def load(cfg, form):
        raise AssertionError("never loaded")

    with pytest.raises(
        ValueError,
        match=r"task name 'tweets' is taken: bench\.tasks\.tweets\.\w+ and "
        r"(tests\.)?test_registries\..*load both register it",
    ):
        tasks.register("tweets")(load)


def test_a_second_family_of_a_name_is_refused():
    bert = families.FAMILIES["bert"]
    with pytest.raises(ValueError, match="family name 'bert' is taken"):
        families.registry([bert, bert])
    assert families.registry([bert]) == {"bert": bert}
