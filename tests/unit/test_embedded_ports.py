"""free_port's stripes: two pytest-xdist workers each start a stack and pick ports side by side;
CI saw analytics fail to bind a web port that the other worker had checked free a moment before."""
from runtime import embedded


def test_a_striped_process_only_hands_out_its_own_stripe(monkeypatch):
    monkeypatch.setattr(embedded, "_STRIPE", (0, 1))
    monkeypatch.setattr(embedded, "_HANDED_OUT", set())
    embedded.stripe_ports(1, 2)
    ports = [embedded.free_port() for _ in range(50)]
    assert all(p % 2 == 1 for p in ports)
    assert len(set(ports)) == 50


def test_stripes_of_two_workers_are_disjoint(monkeypatch):
    monkeypatch.setattr(embedded, "_HANDED_OUT", set())
    picked = {}
    for index in (0, 1, 2):
        monkeypatch.setattr(embedded, "_STRIPE", (0, 1))
        embedded.stripe_ports(index, 3)
        picked[index] = {embedded.free_port() for _ in range(30)}
    assert not (picked[0] & picked[1]) and not (picked[1] & picked[2]) and not (picked[0] & picked[2])
    assert all(p % 3 == i for i, ports in picked.items() for p in ports)
