"""Fixed addresses for `salesbus up`: defaults, ports.toml, then SALESBUS_PORT_* (which wins)."""
import socket

import pytest

from runtime.ports import DEFAULTS, PortError, check_free, load


def test_defaults_are_distinct_and_documented_ones():
    assert len(set(DEFAULTS.values())) == len(DEFAULTS)
    assert DEFAULTS["cart.http"] == 8101 and DEFAULTS["cart.metrics"] == 9101 and DEFAULTS["broker"] == 19092


def test_file_then_environment_override(tmp_path):
    (tmp_path / "ports.toml").write_text('broker = 29092\n[cart]\nhttp = 8201\n')
    ports = load(tmp_path, environ={"SALESBUS_PORT_CART_HTTP": "8301", "SALESBUS_PORT_ORDERS_METRICS": "9303"})
    assert ports["broker"] == 29092 and ports["cart.http"] == 8301 and ports["orders.metrics"] == 9303
    assert ports["payments.http"] == DEFAULTS["payments.http"]


@pytest.mark.parametrize("text", ['broker = "x"\n', "broker = 70000\n", "broker = \n"])
def test_a_bad_file_says_where(tmp_path, text):
    (tmp_path / "ports.toml").write_text(text)
    with pytest.raises(PortError, match="ports.toml"):
        load(tmp_path, environ={})


def test_a_taken_port_names_the_variable_that_moves_it():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        with pytest.raises(PortError, match="SALESBUS_PORT_CART_HTTP"):
            check_free({"cart.http": taken}, ["cart.http"])
