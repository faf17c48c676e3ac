"""The gRPC client against a real daemon: register, publish (acknowledged after commit), list,
subscribe, refusals counted and named, rate asks."""

import math

import pytest

from conftest import wait_for
from framelane.client import Client, ClientError, StepPublisher, raw_frame


def test_steps_and_episodes_are_committed_and_listed(daemon, run_id):
    with Client(daemon.address) as client:
        client.wait_until_ready()
        assert client.register(run_id, profile="debug") == "debug"
        publisher = StepPublisher(client, run_id, batch_size=100)
        for i in range(1, 1001):
            publisher.add(client.step(run_id, episode=i // 250, step=i, reward=0.5, action=[i, {"a": i}]))
        for e in range(4):
            publisher.add_episode(client.episode(run_id, episode=e, total_reward=125.0, steps=250, truncated=True))
        publisher.close()
        assert (publisher.accepted, publisher.dropped) == (1004, 0)
        run = next(r for r in client.list_runs() if r.run_id == run_id)
        assert (run.steps, run.episodes, run.profile) == (1000, 4, "debug")
        stored = []
        for item in client.subscribe_steps(run_id, since_seq=998):
            stored.append(item)
            if len(stored) == 3:
                break
        assert [s.step.step for s in stored] == [998, 999, 1000]
        assert stored[0].step.action.json == "[998, {\"a\": 998}]"


def test_numbered_steps_sent_twice_are_stored_once(daemon, run_id):
    with Client(daemon.address) as client:
        client.wait_until_ready()
        steps = [client.step(run_id, episode=0, step=i, worker_seq=i + 1) for i in range(50)]
        first = client.publish_steps(steps)
        # The acknowledgement was lost: the same batch again, with ten new steps.
        again = client.publish_steps(steps + [client.step(run_id, episode=0, step=i, worker_seq=i + 1) for i in range(50, 60)])
        assert (first.accepted, first.duplicates) == (50, 0)
        assert (again.accepted, again.duplicates) == (60, 50)
        run = next(r for r in client.list_runs() if r.run_id == run_id)
        assert run.steps == 60
        # The publisher numbers its steps itself.
        publisher = StepPublisher(client, run_id + "-p", batch_size=10)
        for i in range(25):
            publisher.add(client.step(run_id + "-p", episode=0, step=i))
        publisher.close()
        assert (publisher.accepted, publisher.duplicates) == (25, 0)


def test_a_bad_step_is_refused_alone_and_named(daemon, run_id):
    with Client(daemon.address) as client:
        client.wait_until_ready()
        client.register(run_id)
        steps = [client.step(run_id, 0, i, reward=1.0) for i in range(1, 11)]
        steps[4] = client.step(run_id, 0, 5, reward=math.nan)
        result = client.publish_steps(steps)
        assert (result.accepted, result.dropped) == (9, 1)
        assert "reward" in result.first_error
        with pytest.raises(ClientError, match="frame has 5 bytes; 2x2 rgb needs 12"):
            raw_frame(b"12345", 2, 2)


def test_a_frame_travels_with_its_step(daemon, run_id):
    with Client(daemon.address) as client:
        client.wait_until_ready()
        client.register(run_id, profile="debug")
        frame = raw_frame(bytes(range(12)), 2, 2, "rgb")
        result = client.publish_steps([client.step(run_id, 0, 1, frame=frame)])
        assert (result.accepted, result.dropped) == (1, 0)
        # The snapshot writer indexes the PNG after the step's commit: wait for it.
        kind = wait_for(lambda: next((s.frame_kind for s in _first(client.subscribe_steps(run_id))), ""))
        assert kind == "png"


def _first(iterator):
    for item in iterator:
        return [item]
    return []


def test_a_rate_ask_with_no_worker_listening_says_so(daemon, run_id):
    with Client(daemon.address) as client:
        client.wait_until_ready()
        assert client.ask_max_rate(run_id, 10) == 0
        with pytest.raises(ClientError, match="INVALID_ARGUMENT"):
            client.ask_max_rate("", 10)


def test_an_unreachable_daemon_is_a_clear_error():
    with Client("127.0.0.1:1", timeout=5) as client:
        with pytest.raises(ClientError, match="127.0.0.1:1"):
            client.list_runs()
