"""Connects and joins take turns (realtime/event_limits.py: Turns): past
CHAT_CONNECT_CONCURRENCY at once, the next one waits, before it takes anything, until one
ends; other events do not wait."""

import threading
import time

import pytest

from simplechat.extensions import socketio
from simplechat.infra.services import init_services
from simplechat.realtime.event_limits import TURNS, Turns

NS = "/chat"


def test_turns_let_in_at_most_their_limit_and_the_next_waits():
    turns = Turns(2)
    inside, order, most = [], [], [0]
    lock = threading.Lock()
    release = threading.Event()

    def holder(n: int) -> None:
        with turns.turn():
            with lock:
                inside.append(n)
                order.append(n)
                most[0] = max(most[0], len(inside))
            release.wait(5)
            with lock:
                inside.remove(n)

    first = [threading.Thread(target=holder, args=(n,)) for n in (1, 2)]
    for t in first:
        t.start()
    deadline = time.monotonic() + 5
    while len(order) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    third = threading.Thread(target=holder, args=(3,))
    third.start()
    deadline = time.monotonic() + 5
    while turns.waiting < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert turns.waiting == 1 and order == [1, 2]  # the third waits its turn
    release.set()
    for t in [*first, third]:
        t.join(5)
    assert order[2] == 3 and most[0] == 2 and turns.waiting == 0


def test_no_limit_means_no_line():
    turns = Turns(0)
    with turns.turn(), turns.turn(), turns.turn():
        assert turns.waiting == 0


def test_a_turn_is_given_back_when_the_holder_fails():
    turns = Turns(1)
    with pytest.raises(RuntimeError):
        with turns.turn():
            raise RuntimeError("the handler failed")
    with turns.turn():  # not left taken
        pass


@pytest.fixture
def one_at_a_time(app):
    app.config["CHAT_RATE_LIMIT"] = "off"
    init_services(app)
    turns = Turns(1)
    saved = app.extensions[TURNS]
    app.extensions[TURNS] = turns
    yield turns
    app.extensions[TURNS] = saved


def _in_background(app, work):
    done: dict = {}

    def run():
        with app.app_context():
            done["result"] = work()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, done


def test_a_connect_waits_while_the_process_has_no_turn_free(
        app, make_user, socket_client, one_at_a_time):
    ada = make_user("ada")
    taken = one_at_a_time.turn()
    taken.__enter__()  # a connect or join of someone else, still running
    try:
        thread, done = _in_background(app, lambda: socket_client(ada))
        deadline = time.monotonic() + 5
        while one_at_a_time.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert one_at_a_time.waiting == 1
        time.sleep(0.2)
        assert thread.is_alive() and "result" not in done
    finally:
        taken.__exit__(None, None, None)
    thread.join(10)
    assert done["result"].is_connected(NS)


def test_a_join_waits_its_turn_and_other_events_do_not(
        app, make_user, make_conversation, socket_client, one_at_a_time):
    ada, bob = make_user("ada"), make_user("bob")
    conversation = make_conversation(ada, bob)
    a = socket_client(ada)
    taken = one_at_a_time.turn()
    taken.__enter__()
    try:
        # An event outside the line answers while the line is held.
        assert a.emit("typing", {"conversation_id": conversation.id, "typing": True},
                      namespace=NS, callback=True) == {"ok": True}
        thread, done = _in_background(app, lambda: a.emit(
            "join", {"conversation_id": conversation.id}, namespace=NS, callback=True))
        deadline = time.monotonic() + 5
        while one_at_a_time.waiting < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert one_at_a_time.waiting == 1 and "result" not in done
    finally:
        taken.__exit__(None, None, None)
    thread.join(10)
    assert done["result"]["ok"] is True


def test_the_sids_waiting_to_connect_are_a_set_with_the_manager_s_list_methods(app):
    """python-socketio keeps the sids between pre_connect and connect (all those waiting their
    turn) in a list it searches on every event: here a dict of sets, and the manager's own
    pre_connect / connect / disconnect steps still work on it."""
    from simplechat.realtime.server import SidSet

    manager = socketio.server.manager
    namespace = "/turns-test"
    sids = [manager.pre_connect(f"eio-{n}", namespace) for n in range(3)]
    try:
        pending = manager.pending_connect[namespace]
        assert isinstance(pending, SidSet) and list(pending) == sids
        assert manager.is_pre_connected(sids[1], namespace)
        assert not manager.is_connected(sids[1], namespace)
        manager.connect(sids[1], namespace)
        assert manager.is_connected(sids[1], namespace)
        assert list(manager.pending_connect[namespace]) == [sids[0], sids[2]]
        for sid in (sids[0], sids[2]):
            manager.connect(sid, namespace)
        assert namespace not in manager.pending_connect  # emptied and dropped, as before
        manager.pre_disconnect(sids[0], namespace)
        assert isinstance(manager.pending_disconnect[namespace], SidSet)
        assert not manager.is_connected(sids[0], namespace)
        manager.disconnect(sids[0], namespace)
        assert namespace not in manager.pending_disconnect
    finally:
        for sid in sids:
            if manager.is_connected(sid, namespace):
                manager.disconnect(sid, namespace)


def test_a_socket_event_s_request_context_matches_a_route(app):
    """Each socket event runs in a request context of the socket's first request
    (/socket.io/): it finds its route at once, and an HTTP request there never reaches it."""
    from flask import request

    with app.test_request_context("/socket.io/", query_string={"EIO": "4",
                                                               "transport": "websocket"}):
        assert request.routing_exception is None
        assert request.url_rule.endpoint == "socketio_transport"
    answer = app.test_client().get("/socket.io/")
    assert answer.status_code == 400  # the Socket.IO server's answer: no engine.io session
