"""`make test`'s two workers (tests/conftest.py): the integration tier on one, every other tier on
the other, so a file's module fixtures and the harness's resets stay in one process."""
from tests.conftest import tier_of


def test_the_integration_tier_is_on_one_worker_and_every_other_tier_on_the_other():
    for tier in ("integration", "kafka", "kafka_faults"):
        assert tier_of(f"tests/{tier}/test_z.py::test_z") == "integration"
    assert tier_of("tests/unit/test_bounds.py::test_x") == "rest"
    assert tier_of("tests/handlers/test_crm.py::test_y[a/b]") == "rest"
    assert tier_of("tests/e2e/test_flow.py::test_f") == "rest"
    assert tier_of("tests/browser/test_journey.py::test_j") == "rest"
    # a parametrised id holding a slash does not change the tier
    assert tier_of("tests/unit/test_x.py::test_y[tests/integration/a]") == "rest"
