"""`make test`'s two workers (tests/conftest.py): the tiers without a broker on one, every bus tier
whole on the other, so a file's module fixtures and the harness's resets stay in one process."""
from tests.conftest import tier_of


def test_unit_and_handler_tests_are_pure_and_every_other_tier_is_on_the_bus():
    assert tier_of("tests/unit/test_bounds.py::test_x") == "pure"
    assert tier_of("tests/handlers/test_crm.py::test_y[a/b]") == "pure"
    for tier in ("integration", "e2e", "browser", "kafka"):
        assert tier_of(f"tests/{tier}/test_z.py::test_z") == "bus"
    assert tier_of("tests/test_top.py::test_t") == "bus"   # a file beside the tiers is not assumed pure
