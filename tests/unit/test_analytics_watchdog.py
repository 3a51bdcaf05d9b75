"""The analytics start watchdog: a faust worker that hung before its group join (CI: 'Recovery:
Starting...' then nothing for 4 minutes) is ended to be started again; a slow recovery is not."""
import threading

from services.analytics.watchdog import EXIT_CODE, StartWatch, start


def test_waiting_without_a_break_for_the_limit_is_a_hang():
    w = StartWatch(limit=90)
    assert not w.hung(0, True)
    assert not w.hung(89, True)
    assert w.hung(90, True)


def test_having_partitions_in_between_resets_the_wait():
    w = StartWatch(limit=90)
    w.hung(0, True)
    assert not w.hung(60, False)       # joined (recovering or ready), then a rebalance
    assert not w.hung(100, True)
    assert not w.hung(189, True)
    assert w.hung(190, True)


def test_the_thread_exits_the_process_with_the_retry_code_only_when_hung():
    exited = []
    done = threading.Event()

    def exit_(code):
        exited.append(code)
        done.set()
    start(lambda: True, limit=0.05, every=0.01, exit_=exit_)
    assert done.wait(5) and exited == [EXIT_CODE]
    exited.clear()
    start(lambda: False, limit=0.05, every=0.01, exit_=exit_)
    threading.Event().wait(0.3)
    assert exited == []
