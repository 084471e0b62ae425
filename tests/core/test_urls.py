"""Credentials never leave in a message or a record (issue 21, case 6)."""

import pytest

from rd_edge.core.urls import mask_url, mask_urls

SECRET = "ssw0rdX"


@pytest.mark.parametrize(
    "url,masked",
    [
        ("http://user:p@ssw0rdX@host/live", "http://user:***@host/live"),  # '@' inside the password
        ("rtsp://admin:s3cr3tpw@10.0.0.5:554/stream1?x=1", "rtsp://admin:***@10.0.0.5:554/stream1?x=1"),
        ("mqtt://u:p%40ssw0rdX@broker:1883/line", "mqtt://u:***@broker:1883/line"),
        ("rtsp://tokenonly@cam/x", "rtsp://***@cam/x"),
        ("rtsp://cam:554/x", "rtsp://cam:554/x"),
    ],
)
def test_mask_url_hides_the_whole_password(url, masked):
    assert mask_url(url) == masked


def test_urls_inside_a_gstreamer_string_are_masked():
    pipeline = 'rtspsrc location="rtsp://admin:p@ssw0rdX@cam/x" latency=0 ! decodebin ! appsink'
    assert mask_urls(pipeline) == 'rtspsrc location="rtsp://admin:***@cam/x" latency=0 ! decodebin ! appsink'


def test_a_stream_that_does_not_open_names_no_password(capsys, tmp_path):
    from rd_edge.runtime.sources import SourceError, open_source

    for spec in (
        f"rtsp://admin:p@{SECRET}@127.0.0.1:9/x",
        f"rtspsrc location=rtsp://admin:p@{SECRET}@127.0.0.1:9/x ! fakesink",
    ):
        with pytest.raises(SourceError) as info:
            open_source(spec)
        assert SECRET not in str(info.value) and "***" in str(info.value)


def test_mqtt_errors_name_no_password():
    from rd_edge.runtime.pipeline import SinkError
    from rd_edge.runtime.sinks.mqtt import parse_mqtt_url

    with pytest.raises(SinkError) as info:
        parse_mqtt_url(f"mqtt://u:p@{SECRET}@broker:1883/a+b")
    assert SECRET not in str(info.value)


def test_a_70000_character_mqtt_prefix_is_refused_up_front():
    from rd_edge.runtime.pipeline import SinkError
    from rd_edge.runtime.sinks.mqtt import parse_mqtt_url

    with pytest.raises(SinkError, match="at most"):
        parse_mqtt_url("mqtt://127.0.0.1:1883/" + "a" * 70000)


def test_server_url_credentials_are_sent_and_never_printed():
    """`rd-infer --server http://user:pw@host`: a real HTTP server sees Basic auth on the request;
    the client's messages mask the password."""
    import base64
    import http.server
    import threading

    from ports import free_ports

    pytest.importorskip("tritonclient.http")
    from rd_edge.runtime.client import ServerError, TritonClient

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.headers.get("Authorization"))
            self.send_response(401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    (port,) = free_ports(1)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with TritonClient(f"http://user:p@{SECRET}@127.0.0.1:{port}", timeout=5) as client:
            assert client.ready() is False
            assert SECRET not in client.url
            with pytest.raises(ServerError) as info:
                client.config()
        assert SECRET not in str(info.value)
    finally:
        server.shutdown()
        server.server_close()
    assert seen and seen[0] == "Basic " + base64.b64encode(f"user:p@{SECRET}".encode()).decode()


def test_credentials_are_masked_and_stripped_for_any_user_and_password():
    """Property (issue 28): whatever the user and password hold (``@``, ``:``, ``/``, ``%``...),
    masking hides the password whole, stripping leaves exactly the host and path a client
    connects to, and url_credentials gives both back decoded."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies
    from urllib.parse import quote

    from rd_edge.core.urls import strip_credentials, url_credentials

    text = st.text(alphabet="abcXYZ019@:/%?#!$&'()*+,;= ._~-", min_size=1, max_size=12)

    @hypothesis.settings(max_examples=150, deadline=None, database=None)
    @hypothesis.given(user=text, password=text, scheme=st.sampled_from(["rtsp", "http", "mqtt"]))
    def check(user, password, scheme):
        url = f"{scheme}://{quote(user, safe='')}:{quote(password, safe='@')}@cam.local:554/live/1?x=1"
        assert url_credentials(url) == (user, password)
        assert strip_credentials(url) == f"{scheme}://cam.local:554/live/1?x=1"
        assert mask_url(url) == f"{scheme}://{quote(user, safe='')}:***@cam.local:554/live/1?x=1"

    check()
