"""A stop waits for Ray Data's executor threads before ``ray.shutdown()``, but not forever."""

import threading
import time

from musicgen import stopping


def test_a_stop_waits_for_ray_data_threads_that_end_and_leaves_the_others():
    done = threading.Event()
    ending = threading.Thread(target=lambda: (time.sleep(0.3), done.set()), daemon=True,
                              name=stopping.RAY_DATA_THREADS + "ending")
    stuck = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True,
                             name=stopping.RAY_DATA_THREADS + "stuck")
    other = threading.Thread(target=threading.Event().wait, args=(5,), daemon=True, name="not-ray-data")
    for thread in (ending, stuck, other):
        thread.start()
    began = time.monotonic()
    stopping.join_threads(stopping.RAY_DATA_THREADS, timeout=1.0)
    waited = time.monotonic() - began
    assert done.is_set() and not ending.is_alive()  # the thread that ends is waited for
    assert stuck.is_alive() and 0.9 < waited < 2.5  # one that does not is left after the timeout in all
    began = time.monotonic()
    stopping.join_threads("nothing-by-this-name", timeout=1.0)
    assert time.monotonic() - began < 0.5 and other.is_alive()  # other threads are not waited for
